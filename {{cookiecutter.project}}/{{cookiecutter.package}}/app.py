"""The app factory's body: settings first, then the layers around every request."""

import logging

from flask import Flask

from . import bodies, health, problems, ratelimit, request_log, security, views
from .logs import configure_logging
from .settings import load_settings_or_exit


def build_app(test_config: dict | None = None) -> Flask:
    settings = load_settings_or_exit()
    if not logging.getLogger().handlers:
        # Outside gunicorn (flask run, tests) nobody has set up logging yet.
        configure_logging(settings.log_level)

    app = Flask(__name__)
    app.config.from_mapping(
        SETTINGS=settings,
        MAX_CONTENT_LENGTH=settings.plan.max_body_mb * 2**20,
        RATELIMIT_DEFAULT=settings.rate_limit,
        RATELIMIT_STORAGE_URI=settings.redis_url or "memory://",
        ACCESS_LOG=settings.access_log,
    )
    if test_config is not None:
        app.config.update(test_config)

    security.init_app(app)
    request_log.init_app(app)
    problems.init_app(app)
    bodies.init_app(app, settings.worker_max_memory_mb)
    ratelimit.init_app(app, exempt=[health.bp])
    app.register_blueprint(health.bp)
    app.register_blueprint(views.bp)
    return app
