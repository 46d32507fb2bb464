"""Per-client rate limits, counted by `limits`, shared through Redis when there is one.

`limits` is the library Flask-Limiter is built on; this module calls it
directly. Flask-Limiter's per-request machinery (resolving decorated, blueprint
and default limits, parsing the limit string again, seven context lookups)
cost more CPU than the route in `make bench`, for the one default limit this
app sets. A fixed window is counted as limits' FixedWindowRateLimiter counts
it, one increment per limit; the keys, the stores and their Redis scripts are
the library's.

Each route has its own count per client (as Flask-Limiter's default limits).
With REDIS_URL every worker of every replica shares one count. Without it,
each worker counts in its own memory and holds its share of the limit (the
limit divided by the configured workers, rounded up), so a replica lets at
most about the limit through, not workers x the limit. If Redis goes away,
requests are still served: the limit falls back to each worker's share in
memory until Redis answers again. RATE_LIMIT=off turns limiting off.
"""

import functools
import logging
import math
import time

from flask import Blueprint, Flask, Response, g, request
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage, Storage, storage_from_string

from . import metrics
from ..seam import workers_in_replica
from .problems import problem_response

log = logging.getLogger(__name__)

# A dead Redis must cost a request milliseconds, not the socket's default wait.
REDIS_TIMEOUTS = {"socket_connect_timeout": 0.25, "socket_timeout": 0.25}
# A dead Redis is tried again after this long, doubling up to the cap.
REDIS_RETRY_SECONDS = 1.0
REDIS_RETRY_MAX_SECONDS = 30.0
# How often a worker re-reads the configured worker count that sets its share.
SHARE_REFRESH_SECONDS = 1.0


class WorkerMemoryStorage(MemoryStorage):
    """limits' in-memory counts, with expired keys swept inline at most once a second.

    The stock class starts a timer thread 10 ms after each count, to sweep:
    under load, a new thread every 10 ms in every worker, costing more CPU
    than the counting. Not registered as a URI scheme: built here only. The
    private names it replaces are checked at start (cluster/gunicorn_compat.py).
    """

    SWEEP_SECONDS = 1.0

    def __init__(self):
        super().__init__()
        self.timer.cancel()
        self.next_sweep = 0.0

    def _MemoryStorage__schedule_expiry(self) -> None:
        # Called by every count in place of starting the timer.
        now = time.monotonic()
        if now >= self.next_sweep:
            self.next_sweep = now + self.SWEEP_SECONDS
            self._MemoryStorage__expire_events()


@functools.cache
def worker_share(limit: str, workers: int) -> tuple[RateLimitItem, ...]:
    """One worker's share of `limit` when `workers` count apart: 100/minute over 5 is 20/minute."""
    return tuple(type(item)(math.ceil(item.amount / workers), item.multiples) for item in parse_many(limit))


def client_key() -> str:
    """Whom a count belongs to: the client's address (the real one: see security.py)."""
    return request.remote_addr or "unknown"


class RateLimit:
    """Counts each routed request against the limit; answers 429 past it, and says where it stands."""

    def __init__(self, limit: str | None, redis_url: str | None, exempt: list[Blueprint]):
        self.limit = limit
        self.exempt = frozenset(blueprint.name for blueprint in exempt)
        self.memory: Storage = WorkerMemoryStorage()
        self.shared: Storage | None = storage_from_string(redis_url, **REDIS_TIMEOUTS) if redis_url else None
        # The store /health/ready asks about: Redis when there is one.
        self.storage: Storage = self.shared or self.memory
        self.shared_items = tuple(parse_many(limit)) if limit else ()
        self.redis_down_until = 0.0
        self.redis_retry = REDIS_RETRY_SECONDS
        self.share_checked_at = -SHARE_REFRESH_SECONDS
        self.share: tuple[RateLimitItem, ...] = ()

    def _local_items(self) -> tuple[RateLimitItem, ...]:
        now = time.monotonic()
        if now - self.share_checked_at >= SHARE_REFRESH_SECONDS:
            self.share_checked_at = now
            self.share = worker_share(self.limit, workers_in_replica())
        return self.share

    def check(self) -> Response | None:
        """before_request: count this request; a 429 problem once the client is past the limit."""
        if request.endpoint is None or request.blueprint in self.exempt:
            return None  # unrouted requests (404, 405) and exempt blueprints are not counted
        identifiers = (client_key(), request.endpoint)
        if self.shared is not None and time.monotonic() >= self.redis_down_until:
            try:
                return self._count(self.shared, self.shared_items, identifiers)
            except Exception:
                self._redis_failed()
        try:
            return self._count(self.memory, self._local_items(), identifiers)
        except Exception:
            log.exception("Rate limit: counting failed; the request is served")
            return None

    def _count(self, storage: Storage, items, identifiers) -> Response | None:
        # FixedWindowRateLimiter.hit, then get_window_stats for the limit shown,
        # minus one call to the store (a Redis round trip): the increment
        # returns the count. Limits after a breached one are not counted.
        shown = None  # (limit, its key, its count): the first limit, or the one breached
        for item in items:
            key = item.key_for(*identifiers)
            count = storage.incr(key, item.get_expiry(), amount=1)
            if shown is None or count > item.amount:
                shown = (item, key, count)
            if count > item.amount:
                break
        limit, key, count = shown
        g.rate_limit = (limit.amount, max(0, limit.amount - count), storage.get_expiry(key))
        if storage is self.shared and self.redis_retry != REDIS_RETRY_SECONDS:
            log.warning("Rate limit: Redis answers again; counting there")
            self.redis_retry = REDIS_RETRY_SECONDS
        if count <= limit.amount:
            return None
        metrics.record_rate_limited(limit)
        return problem_response(429, f"Rate limit exceeded: {limit}")

    def _redis_failed(self) -> None:
        log.warning("Rate limit: Redis does not answer; counting in this worker's memory for %.0fs", self.redis_retry)
        self.redis_down_until = time.monotonic() + self.redis_retry
        self.redis_retry = min(self.redis_retry * 2, REDIS_RETRY_MAX_SECONDS)

    @staticmethod
    def add_headers(response: Response) -> Response:
        """after_request: the limit, what is left of it, and when it resets (as Flask-Limiter sent them)."""
        state = g.pop("rate_limit", None)
        if state is None:
            return response
        amount, remaining, reset_at = state
        headers = response.headers
        headers.add("X-RateLimit-Limit", str(amount))
        headers.add("X-RateLimit-Remaining", str(remaining))
        headers.add("X-RateLimit-Reset", str(int(reset_at)))
        retry_after = int(reset_at - time.time())
        # Another layer's wait (a body waiting its turn) may be longer. A scan, since
        # headers.get raises and catches inside when the header is missing.
        existing = next((value for name, value in headers if name.lower() == "retry-after"), "")
        if existing.isdigit():
            retry_after = max(retry_after, int(existing))
        headers.set("Retry-After", str(retry_after))
        return response


def init_app(app: Flask, exempt: list[Blueprint]) -> RateLimit:
    """Limit every route by client IP (the real one: see security.py), except `exempt`."""
    uri = app.config["RATELIMIT_STORAGE_URI"]
    limiter = RateLimit(app.config["RATELIMIT_DEFAULT"], None if uri == "memory://" else uri, exempt)
    app.extensions["rate_limiter"] = limiter
    # None (RATE_LIMIT=off): the limiter is built (readiness still asks Redis) but counts nothing.
    if limiter.limit is not None:
        app.before_request(limiter.check)
        app.after_request(limiter.add_headers)
    return limiter


def storage_answers(app: Flask) -> bool:
    """Whether the limiter's store (Redis, or memory) answers right now."""
    try:
        return bool(app.extensions["rate_limiter"].storage.check())
    except Exception:
        return False
