"""The my_service service: its Flask app factory."""


def create_app(test_config: dict | None = None):
    """Build the Flask app; `test_config` overrides any setting (tests use it)."""
    # Imported here, not at the top: gunicorn's master imports this package for
    # its cluster code, and must not load Flask before a gevent worker patches
    # the standard library.
    from .app import build_app

    return build_app(test_config)
