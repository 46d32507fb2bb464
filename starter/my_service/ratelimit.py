"""Per-client rate limits with Flask-Limiter, shared through Redis when there is one.

Without REDIS_URL each worker counts on its own, so N workers allow N times
the limit; with it, every worker of every replica shares one count. If Redis
goes away, requests are still served: the limit falls back to each worker's
memory until Redis answers again.
"""

import logging

from flask import Blueprint, Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

log = logging.getLogger(__name__)

# A dead Redis must cost a request milliseconds, not the socket's default wait.
REDIS_TIMEOUTS = {"socket_connect_timeout": 0.25, "socket_timeout": 0.25}


def init_app(app: Flask, exempt: list[Blueprint]) -> Limiter:
    """Limit every route by client IP (the real one: see security.py), except `exempt`."""
    if app.config["RATELIMIT_STORAGE_URI"] == "memory://":
        log.warning(
            "Rate limit %s is counted per worker: set REDIS_URL to share it across workers and replicas",
            app.config["RATELIMIT_DEFAULT"],
        )
    else:
        app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", REDIS_TIMEOUTS)
        app.config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
    limiter = Limiter(get_remote_address, app=app, headers_enabled=True, swallow_errors=True)
    for blueprint in exempt:
        limiter.exempt(blueprint)
    app.extensions["rate_limiter"] = limiter
    return limiter


def storage_answers(app: Flask) -> bool:
    """Whether the limiter's store (Redis, or memory) answers right now."""
    try:
        return bool(app.extensions["rate_limiter"].storage.check())
    except Exception:
        return False
