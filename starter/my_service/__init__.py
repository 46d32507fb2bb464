"""my-service: the Flask app factory. This package is yours."""

from flask import Flask

import railkit


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app; `test_config` overrides any setting (the tests use it)."""
    app = Flask(__name__)
    # The platform's layers: problem+json errors, JSON bodies, request ids and
    # JSON logs, the client's address, rate limits, /metrics and /health.
    railkit.init_app(app, test_config)

    # Your stuff: blueprints, extensions, settings of your own.
    from . import views

    app.register_blueprint(views.bp)
    return app
