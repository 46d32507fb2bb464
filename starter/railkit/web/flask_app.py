"""init_app: the platform's layers around every request of the owner's Flask app."""

import logging
import types
import weakref

from flask import Flask

from .. import tracing
from ..logs import configure_logging
from ..settings import Settings, load_settings_or_exit
from . import bodies, error_tracking, health, metrics, problems, ratelimit, request_log, security


def init_app(app: Flask, test_config: dict | None = None) -> Flask:
    """Wrap `app` in the platform's layers and add /health; `test_config` overrides any setting (tests use it).

    With TESTING in `test_config` the plan's rate limit is off: a test that wants one sets RATE_LIMIT or
    passes RATELIMIT_DEFAULT (e.g. "5/minute"). Call it first in create_app, before registering your blueprints.
    """
    # Tests may hand in their own Settings; everything below derives from them.
    settings: Settings = (test_config or {}).get("SETTINGS") or load_settings_or_exit()
    if not logging.getLogger().handlers:
        # Outside gunicorn (flask run, tests) nobody has set up logging yet.
        configure_logging(settings.log_level)

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
        if app.testing and not settings.rate_limit_set and "RATELIMIT_DEFAULT" not in test_config:
            # A test client makes hundreds of requests from one address: the plan's limit would answer them
            # 429. Tests that test limiting set RATE_LIMIT, or pass RATELIMIT_DEFAULT in test_config.
            app.config["RATELIMIT_DEFAULT"] = None
    _remember_which_functions_are_async(app)

    # Order matters: Sentry before the layers it watches, the span before the
    # layers it times, the client address before anything reads it, the
    # request id before any answer carries it, and /metrics before the rate
    # limit, so scrapes are not counted.
    error_tracking.init_app(app)
    tracing.init_app(app)
    security.init_app(app)
    request_log.init_app(app)
    if settings.metrics:
        metrics.init_app(app)
    problems.init_app(app)
    bodies.init_app(app, settings.worker_max_memory_mb)
    ratelimit.init_app(app, exempt=[health.bp])
    app.register_blueprint(health.bp)
    return app


def _remember_which_functions_are_async(app: Flask) -> None:
    """Flask asks, for each before/after/teardown hook and the view, on every request, whether it is a coroutine.

    With each layer's hooks that cost as much as a layer; this asks once per
    function. Weakly keyed: a per-request function (after_this_request) is not
    kept alive.
    """
    # func -> whether it is a coroutine function (a bool, so the entry never holds func alive).
    is_async_by_func = weakref.WeakKeyDictionary()
    ensure_sync = app.ensure_sync

    def remembered_ensure_sync(self, func):
        try:
            is_async = is_async_by_func.get(func)
        except TypeError:  # not weakly referable: ask each time
            return ensure_sync(func)
        if is_async is None:
            synced = ensure_sync(func)
            is_async_by_func[func] = synced is not func
            return synced
        return self.async_to_sync(func) if is_async else func

    app.ensure_sync = types.MethodType(remembered_ensure_sync, app)
