"""railkit: the platform under this project — a gunicorn cluster for Railway and the layers around every request.

This folder comes from the template, byte for byte: `cruft update` brings new
versions (see CHANGELOG.md), so edit your own package instead. What a project
uses of it, all of it documented in the project's README ("The platform"):

- `railkit.init_app(app)`: problem+json errors, JSON bodies, request ids and
  logs, the client address, rate limits, metrics and /health, for a Flask app;
- `gunicorn.conf.py` takes the cluster's settings (`railkit.cluster.config.gunicorn_settings()`);
  server hooks defined there run after the platform's, never instead of them;
- `railkit.Problem(status, title, **members)`: raise it to answer a problem+json;
- `railkit.settings.load_settings_or_exit()`: every environment variable, checked;
- `python -m railkit.cluster serve|status`: start the cluster, or look at it.

Nothing here imports Flask until init_app is called, so gunicorn's master can
read its configuration before a gevent worker patches the standard library.
"""

__version__ = "1.0.0"


def init_app(app, test_config: dict | None = None):
    """Wrap a Flask app in the platform's layers and add /health (see railkit.web.flask_app)."""
    from .web.flask_app import init_app as wrap

    return wrap(app, test_config)


def __getattr__(name):
    # Problem needs Flask: imported on first use, never by gunicorn's master reading its configuration.
    if name == "Problem":
        from .web.problems import Problem

        return Problem
    raise AttributeError(name)
