"""The app factory's body: settings first, then the layers around every request."""

import logging
import weakref

from flask import Flask

from . import bodies, error_tracking, health, metrics, problems, ratelimit, request_log, security, views
from .logs import configure_logging
from .settings import load_settings_or_exit


class LayeredFlask(Flask):
    """Flask, asking once per function (not on every request) whether a hook or view is a coroutine.

    Flask asks for each before/after/teardown hook and the view, on every
    request; with each layer's hooks, that cost as much as a layer. Weakly
    keyed: a per-request function (after_this_request) is not kept alive.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # func -> whether it is a coroutine function (a bool, so the entry never holds func alive).
        self._is_async = weakref.WeakKeyDictionary()

    def ensure_sync(self, func):
        try:
            is_async = self._is_async.get(func)
        except TypeError:  # not weakly referable: ask each time
            return super().ensure_sync(func)
        if is_async is None:
            synced = super().ensure_sync(func)
            self._is_async[func] = synced is not func
            return synced
        return self.async_to_sync(func) if is_async else func


def build_app(test_config: dict | None = None) -> Flask:
    # Tests may hand in their own Settings; everything below derives from them.
    settings = (test_config or {}).get("SETTINGS") or load_settings_or_exit()
    if not logging.getLogger().handlers:
        # Outside gunicorn (flask run, tests) nobody has set up logging yet.
        configure_logging(settings.log_level)

    app = LayeredFlask(__name__)
    app.config.from_mapping(
        SETTINGS=settings,
        MAX_CONTENT_LENGTH=settings.plan.max_body_mb * 2**20,
        # None (RATE_LIMIT=off) turns the limiter off.
        RATELIMIT_DEFAULT=settings.rate_limit,
        RATELIMIT_STORAGE_URI=settings.redis_url or "memory://",
        ACCESS_LOG=settings.access_log,
    )
    if test_config is not None:
        app.config.update(test_config)

    # Order matters: Sentry before the layers it watches, the client address
    # before anything reads it, the request id before any answer carries it,
    # and /metrics before the rate limit, so scrapes are not counted.
    error_tracking.init_app(app)
    security.init_app(app)
    request_log.init_app(app)
    if settings.metrics:
        metrics.init_app(app)
    problems.init_app(app)
    bodies.init_app(app, settings.worker_max_memory_mb)
    ratelimit.init_app(app, exempt=[health.bp])
    app.register_blueprint(health.bp)
    app.register_blueprint(views.bp)
    return app
