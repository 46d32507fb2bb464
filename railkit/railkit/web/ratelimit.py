"""Per-client rate limits, counted by `limits`, shared through Redis when there is one.

`limits` is the library Flask-Limiter is built on; this module calls it
directly. Flask-Limiter's per-request machinery (resolving decorated, blueprint
and default limits, parsing the limit string again, seven context lookups)
cost more CPU than the route in `make bench`, for the one default limit this
app sets. A fixed window is counted as limits' FixedWindowRateLimiter counts
it, one increment per limit; the keys and the Redis store are the library's.

Each route has its own count per client (as Flask-Limiter's default limits).
A client is its address (the real one: see security.py), except that an IPv6
client is its prefix (RATE_LIMIT_IPV6_PREFIX, /56 unless set: one subscriber
owns all of it), and an IPv6 form that carries an IPv4 address (mapped, NAT64,
6to4, IPv4-compatible, Teredo) is that IPv4 address.

With REDIS_URL every worker of every replica shares one exact count. Without
it, each of W workers counts in its own memory and holds a share of the limit
L, ceil(L / W), and a client's requests go to whichever worker accepts its
connection. So a replica lets a client through at least ceil(L / W) and at
most W x ceil(L / W) times a window: RATE_LIMIT=2/minute on 5 workers lets
1 to 5 through, depending on how many workers its connections reach. Clients
are always shown the configured limit; X-RateLimit-Remaining is this worker's
remaining share scaled to the replica (W x what is left here, at most L). If
Redis goes away, requests are still served: the limit falls back to each
worker's share in memory until Redis answers again. RATE_LIMIT=off turns
limiting off, and so does testing (TESTING=True) unless the test sets
RATE_LIMIT or passes RATELIMIT_DEFAULT in its test_config.
"""

import functools
import ipaddress
import logging
import math
import threading
import time

from flask import Blueprint, Flask, Response, g, request
from limits import RateLimitItem, parse_many
from limits.storage import Storage, storage_from_string

from ..seam import workers_in_replica
from . import metrics
from .problems import problem_response

log = logging.getLogger(__name__)

# A dead Redis must cost a request milliseconds, not the socket's default wait.
REDIS_TIMEOUTS = {"socket_connect_timeout": 0.25, "socket_timeout": 0.25}
# A dead Redis is tried again after this long, doubling up to the cap.
REDIS_RETRY_SECONDS = 1.0
REDIS_RETRY_MAX_SECONDS = 30.0
# How often a worker re-reads the configured worker count that sets its share.
SHARE_REFRESH_SECONDS = 1.0
# Distinct client addresses whose key is remembered; parsing an address costs more than counting it.
KEY_CACHE_SIZE = 4096
# NAT64's well-known prefix (RFC 6052): the last 32 bits are the IPv4 address.
NAT64 = ipaddress.ip_network("64:ff9b::/96")
# IPv4-compatible addresses (RFC 4291, deprecated): ::a.b.c.d, but not :: and ::1.
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


class WorkerMemoryStorage:
    """Fixed-window counts in this worker's memory: every read, count and sweep under one lock.

    limits' MemoryStorage starts a timer thread 10 ms after each count, to
    sweep expired keys: under load, a new thread every 10 ms in every worker.
    Its sweep also races a concurrent read of the same key (KeyError, the
    request served uncounted). Here expired keys are swept inline, at most once
    a second, under the same lock as the counts. The methods are limits'
    Storage interface, as far as the limiter uses it.
    """

    SWEEP_SECONDS = 1.0

    def __init__(self):
        self.lock = threading.Lock()
        # key -> [count, when its window ends (epoch seconds)]
        self.windows: dict[str, list] = {}
        self.next_sweep = 0.0

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        """Add `amount` to the key's count in its current window (a new window once the last one ended)."""
        now = time.time()
        with self.lock:
            if now >= self.next_sweep:
                self._sweep(now)
            window = self.windows.get(key)
            if window is None or window[1] <= now:
                window = self.windows[key] = [0, now + expiry]
            window[0] += amount
            return window[0]

    def get(self, key: str) -> int:
        with self.lock:
            window = self.windows.get(key)
            return window[0] if window and window[1] > time.time() else 0

    def get_expiry(self, key: str) -> float:
        """When the key's window ends (now, if it has no live window)."""
        now = time.time()
        with self.lock:
            window = self.windows.get(key)
            return window[1] if window and window[1] > now else now

    def check(self) -> bool:
        return True

    def reset(self) -> int:
        with self.lock:
            cleared = len(self.windows)
            self.windows.clear()
            return cleared

    def clear(self, key: str) -> None:
        with self.lock:
            self.windows.pop(key, None)

    def _sweep(self, now: float) -> None:
        self.next_sweep = now + self.SWEEP_SECONDS
        for key in [key for key, (_, ends) in self.windows.items() if ends <= now]:
            del self.windows[key]


@functools.cache
def worker_share(limit: str, workers: int) -> tuple[tuple[RateLimitItem, RateLimitItem], ...]:
    """(one worker's share, the configured limit) for each limit: 100/minute over 5 workers is 20/minute."""
    return tuple((type(item)(math.ceil(item.amount / workers), item.multiples), item) for item in parse_many(limit))


def ipv4_inside(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries: mapped, NAT64, 6to4, IPv4-compatible or Teredo; else None."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64 or (address in IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def rate_limit_key(address: str, ipv6_prefix: int) -> str:
    """Whom a count belongs to: an IPv4 address as itself, an IPv6 one by its /ipv6_prefix or its IPv4 form."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address or "unknown"
    if ip.version == 4:
        return str(ip)
    inside = ipv4_inside(ip)
    if inside is not None:
        return str(inside)
    return str(ipaddress.IPv6Network((ip, ipv6_prefix), strict=False))


class RateLimit:
    """Counts each routed request against the limit; answers 429 past it, and says where it stands."""

    def __init__(self, limit: str | None, redis_url: str | None, exempt: list[Blueprint], ipv6_prefix: int = 56):
        self.limit = limit
        self.exempt = frozenset(blueprint.name for blueprint in exempt)
        self.memory = WorkerMemoryStorage()
        self.shared: Storage | None = storage_from_string(redis_url, **REDIS_TIMEOUTS) if redis_url else None
        # The store /health/ready asks about: Redis when there is one.
        self.storage = self.shared or self.memory
        self.shared_items = tuple((item, item) for item in parse_many(limit)) if limit else ()
        self.client_key = functools.lru_cache(maxsize=KEY_CACHE_SIZE)(
            functools.partial(rate_limit_key, ipv6_prefix=ipv6_prefix)
        )
        # Redis's state, changed under the lock. Each outage (and each failed retry) is one
        # generation: requests that fail together, having tried in the same one, back off once.
        self.redis_lock = threading.Lock()
        self.redis_generation = 0
        self.redis_down_until = 0.0
        self.redis_retry = REDIS_RETRY_SECONDS
        self.share_checked_at = -SHARE_REFRESH_SECONDS
        self.share: tuple[tuple[RateLimitItem, RateLimitItem], ...] = ()
        self.workers = 1

    def _local_items(self) -> tuple[tuple[RateLimitItem, RateLimitItem], ...]:
        now = time.monotonic()
        if now - self.share_checked_at >= SHARE_REFRESH_SECONDS:
            self.share_checked_at = now
            self.workers = workers_in_replica()
            self.share = worker_share(self.limit, self.workers)
        return self.share

    def check(self) -> Response | None:
        """before_request: count this request; a 429 problem once the client is past the limit."""
        if request.endpoint is None or request.blueprint in self.exempt:
            return None  # unrouted requests (404, 405) and exempt blueprints are not counted
        identifiers = (self.client_key(request.remote_addr or ""), request.endpoint)
        if self.shared is not None and time.monotonic() >= self.redis_down_until:
            generation = self.redis_generation
            try:
                answer = self._count(self.shared, self.shared_items, identifiers, 1)
            except Exception:
                self._redis_failed(generation)
            else:
                if self.redis_retry != REDIS_RETRY_SECONDS:
                    self._redis_answered(generation)
                return answer
        try:
            return self._count(self.memory, self._local_items(), identifiers, self.workers)
        except Exception:
            log.exception("Rate limit: counting failed; the request is served")
            return None

    def _count(self, storage, items, identifiers, workers: int) -> Response | None:
        # FixedWindowRateLimiter.hit, then get_window_stats for the limit shown,
        # minus one call to the store (a Redis round trip): the increment
        # returns the count. Limits after a breached one are not counted.
        # `items` pairs the limit counted here with the configured one clients are shown.
        shown = None  # (counted limit, configured limit, its key, its count): the first, or the one breached
        for counted, configured in items:
            key = counted.key_for(*identifiers)
            count = storage.incr(key, counted.get_expiry(), amount=1)
            if shown is None or count > counted.amount:
                shown = (counted, configured, key, count)
            if count > counted.amount:
                break
        counted, configured, key, count = shown
        remaining = min(configured.amount, max(0, counted.amount - count) * workers)
        g.rate_limit = (configured.amount, remaining, storage.get_expiry(key))
        if count <= counted.amount:
            return None
        metrics.record_rate_limited(configured)
        return problem_response(429, f"Rate limit exceeded: {configured}")

    def _redis_failed(self, generation: int) -> None:
        """Back off once per outage: the requests that failed together in one generation double the delay once."""
        with self.redis_lock:
            if generation != self.redis_generation:
                return
            self.redis_generation += 1
            retry = self.redis_retry
            self.redis_down_until = time.monotonic() + retry
            self.redis_retry = min(retry * 2, REDIS_RETRY_MAX_SECONDS)
        log.warning("Rate limit: Redis does not answer; counting in this worker's memory for %.0fs", retry)

    def _redis_answered(self, generation: int) -> None:
        with self.redis_lock:
            # A request that began before the outage was declared says nothing about Redis now.
            if generation != self.redis_generation or self.redis_retry == REDIS_RETRY_SECONDS:
                return
            self.redis_retry = REDIS_RETRY_SECONDS
        log.warning("Rate limit: Redis answers again; counting there")

    @staticmethod
    def add_headers(response: Response) -> Response:
        """after_request: the configured limit, what is left of it, when it resets; Retry-After on a 429 only."""
        state = g.pop("rate_limit", None)
        if state is None:
            return response
        amount, remaining, reset_at = state
        headers = response.headers
        headers.add("X-RateLimit-Limit", str(amount))
        headers.add("X-RateLimit-Remaining", str(remaining))
        headers.add("X-RateLimit-Reset", str(int(reset_at)))
        if response.status_code != 429:
            return response
        retry_after = max(1, math.ceil(reset_at - time.time()))
        # Another layer's wait (a body waiting its turn) may be longer. A scan, since
        # headers.get raises and catches inside when the header is missing.
        existing = next((value for name, value in headers if name.lower() == "retry-after"), "")
        if existing.isdigit():
            retry_after = max(retry_after, int(existing))
        headers.set("Retry-After", str(retry_after))
        return response


def init_app(app: Flask, exempt: list[Blueprint]) -> RateLimit:
    """Limit every route by client (see rate_limit_key), except `exempt`."""
    uri = app.config["RATELIMIT_STORAGE_URI"]
    limiter = RateLimit(
        app.config["RATELIMIT_DEFAULT"],
        None if uri == "memory://" else uri,
        exempt,
        ipv6_prefix=app.config["SETTINGS"].rate_limit_ipv6_prefix,
    )
    app.extensions["rate_limiter"] = limiter
    # None (RATE_LIMIT=off, or testing): the limiter is built (readiness still asks Redis) but counts nothing.
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
