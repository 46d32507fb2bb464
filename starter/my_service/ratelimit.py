"""Per-client rate limits with Flask-Limiter, shared through Redis when there is one.

With REDIS_URL every worker of every replica shares one count. Without it,
each worker counts in its own memory and holds its share of the limit (the
limit divided by the configured workers, rounded up), so a replica lets at
most about the limit through, not workers x the limit. If Redis goes away,
requests are still served: the limit falls back to each worker's memory until
Redis answers again. RATE_LIMIT=off turns limiting off.
"""

import functools
import logging
import math

from flask import Blueprint, Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits import parse_many

from . import metrics
from .cluster import board

log = logging.getLogger(__name__)

# A dead Redis must cost a request milliseconds, not the socket's default wait.
REDIS_TIMEOUTS = {"socket_connect_timeout": 0.25, "socket_timeout": 0.25}


def init_app(app: Flask, exempt: list[Blueprint]) -> Limiter:
    """Limit every route by client IP (the real one: see security.py), except `exempt`."""
    if app.config["RATELIMIT_DEFAULT"] is None:
        app.config["RATELIMIT_ENABLED"] = False
    elif app.config["RATELIMIT_STORAGE_URI"] == "memory://":
        limit = app.config["RATELIMIT_DEFAULT"]
        app.config["RATELIMIT_DEFAULT"] = lambda: worker_share(limit, _configured_workers())
    else:
        app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", REDIS_TIMEOUTS)
        app.config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
    limiter = Limiter(
        get_remote_address, app=app, headers_enabled=True, swallow_errors=True, on_breach=metrics.record_rate_limited
    )
    for blueprint in exempt:
        limiter.exempt(blueprint)
    app.extensions["rate_limiter"] = limiter
    return limiter


@functools.cache
def worker_share(limit: str, workers: int) -> str:
    """One worker's share of `limit` when `workers` count apart: 100/minute over 5 is 20/minute."""
    return ";".join(
        f"{math.ceil(item.amount / workers)} per {item.multiples} {item.GRANULARITY.name}" for item in parse_many(limit)
    )


def _configured_workers() -> int:
    # The app is built before any worker exists; the board knows the count by the first request.
    scoreboard = board.current()
    return max(1, scoreboard.master()[1]) if scoreboard else 1


def storage_answers(app: Flask) -> bool:
    """Whether the limiter's store (Redis, or memory) answers right now."""
    try:
        return bool(app.extensions["rate_limiter"].storage.check())
    except Exception:
        return False
