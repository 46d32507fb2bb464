"""railkit: the platform under this project, a gunicorn cluster for Railway and the layers around every request.

This folder comes from the template, byte for byte: `cruft update` brings new versions (the
template's railkit/CHANGELOG.md), so edit your own package instead. The names in `__all__` here,
in `railkit.db`, `railkit.db.testing` and `railkit.cluster.config` are the public API (the
project's README, "The platform's API"); everything else may change in any release. Nothing here
imports Flask until it is used, so gunicorn's master can read its configuration before a gevent
worker patches the standard library.
"""

from importlib import import_module

__version__ = "2.0.0"

__all__ = [
    "Problem",
    "__version__",
    "add_readiness_check",
    "exempt",
    "in_every_worker",
    "init_app",
    "limit",
    "setting",
]

# Public names, each imported from its module on first use.
_PUBLIC = {
    "Problem": "railkit.web.problems",
    "add_readiness_check": "railkit.web.health",
    "exempt": "railkit.web.ratelimit",
    "limit": "railkit.web.ratelimit",
    "in_every_worker": "railkit.background",
    "setting": "railkit.owner_settings",
}


def init_app(app, test_config: dict | None = None):
    """Wrap a Flask app in the platform's layers and add /health (see railkit.web.flask_app)."""
    from .web.flask_app import init_app as wrap

    return wrap(app, test_config)


def __getattr__(name):
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'railkit' has no attribute {name!r}")
