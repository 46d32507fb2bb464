"""Per-client rate limits: a default for every route (RATE_LIMIT), and a view's own (`railkit.limit`, `railkit.exempt`).

A limit is counted per client and route in fixed windows, in Redis when
REDIS_URL is set (one exact count for every worker and replica, see
ratelimit_redis.py), else in each worker's memory (ratelimit_memory.py),
where each of W workers holds ceil(L / W) of the limit L: a replica lets a
client through between ceil(L / W) and W x ceil(L / W) times a window,
depending on which workers its connections reach. If Redis is down the
limit falls back to each worker's share in memory. A client is its address
(the real one: see security.py), an IPv6 client its prefix
(RATE_LIMIT_IPV6_PREFIX), and an IPv6 form of an IPv4 address that address.
Clients are shown the limit that applied (X-RateLimit-*, Retry-After on 429).
"""

import functools
import ipaddress
import logging
import math
import time
from typing import NamedTuple

from flask import Blueprint, Flask, Response, current_app, g, request
from limits import RateLimitItem, parse_many

from ..seam import workers_in_replica
from . import metrics
from .problems import problem_response
from .ratelimit_memory import WorkerMemoryStorage
from .ratelimit_redis import RedisBusy, RedisCounter, RedisUnavailable

log = logging.getLogger(__name__)

# How often a worker re-reads the configured worker count that sets its share.
SHARE_REFRESH_SECONDS = 1.0
# Distinct client addresses whose key is remembered; parsing an address costs more than counting it.
KEY_CACHE_SIZE = 4096
# NAT64's well-known prefix (RFC 6052): the last 32 bits are the IPv4 address.
NAT64 = ipaddress.ip_network("64:ff9b::/96")
# IPv4-compatible addresses (RFC 4291, deprecated): ::a.b.c.d, but not :: and ::1.
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
# Where the decorators leave their marks on a view (or, for exempt, a blueprint).
LIMITS_MARK = "railkit_rate_limits"
EXEMPT_MARK = "railkit_rate_limit_exempt"
# A view's own limit is counted apart from the default, even where both read alike.
ROUTE_SCOPE = "route"


class Rule(NamedTuple):
    """The limit a route is counted against, and what its keys carry besides the client."""

    spec: str
    scope: tuple[str, ...]


def parse_limit(spec: str, where: str) -> list[RateLimitItem]:
    """The limits in `spec`, or a ValueError naming `where` it was written and what a limit looks like."""
    try:
        items = parse_many(spec)
    except ValueError:
        items = []
    if not items or any(item.amount < 1 for item in items):
        raise ValueError(
            f"{where}: {spec!r} is not a rate limit: use a count per period, e.g. '10/minute', "
            "or several separated by ';', e.g. '10/second;100/minute'"
        )
    return items


def limit(spec: str):
    """Give a view its own limit, in place of the default (RATE_LIMIT): `@railkit.limit("10/minute")`.

    Several are separated by ';'. Counted per client for this route, in the same
    store as the default. A limit that does not parse is refused here, when the
    view's module is imported. Put it below or above the route decorator.
    """
    if not isinstance(spec, str):
        raise TypeError('railkit.limit takes the limit first: @railkit.limit("10/minute")')
    parse_limit(spec, f"railkit.limit({spec!r})")

    def decorate(view):
        if not callable(view) or isinstance(view, Blueprint):
            raise TypeError(f"railkit.limit({spec!r}) decorates a view function, not {view!r}")
        if getattr(view, EXEMPT_MARK, False):
            raise TypeError(f"{_name(view)}: railkit.limit and railkit.exempt contradict each other: keep one")
        # The same function Flask registered, marked: either decorator order reaches it.
        setattr(view, LIMITS_MARK, (*getattr(view, LIMITS_MARK, ()), spec.strip()))
        return view

    return decorate


def exempt(view):
    """Exempt a view, or every view of a blueprint, from the default limit (RATE_LIMIT): `@railkit.exempt`."""
    if not (callable(view) or isinstance(view, Blueprint)):
        raise TypeError("railkit.exempt decorates a view function or marks a blueprint: @railkit.exempt")
    if getattr(view, LIMITS_MARK, ()):
        raise TypeError(f"{_name(view)}: railkit.limit and railkit.exempt contradict each other: keep one")
    setattr(view, EXEMPT_MARK, True)
    return view


def _name(view) -> str:
    return getattr(view, "__qualname__", None) or getattr(view, "name", None) or repr(view)


@functools.cache
def shared_items(spec: str) -> tuple[tuple[RateLimitItem, RateLimitItem], ...]:
    """(the limit counted, the limit shown) for each limit in `spec`: with one shared count, the same."""
    return tuple((item, item) for item in parse_many(spec))


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
    """Counts each routed request against its route's limit; answers 429 past it, and says where it stands."""

    def __init__(self, limit: str | None, redis_url: str | None, exempt: list[Blueprint], ipv6_prefix: int = 56):
        self.default = limit
        self.exempt = frozenset(blueprint.name for blueprint in exempt)
        self.memory = WorkerMemoryStorage()
        self.redis = RedisCounter(redis_url) if redis_url else None
        self.client_key = functools.lru_cache(maxsize=KEY_CACHE_SIZE)(
            functools.partial(rate_limit_key, ipv6_prefix=ipv6_prefix)
        )
        # endpoint -> its Rule, or None when nothing limits it; views are decorated before any request.
        self.rules: dict[str, Rule | None] = {}
        self.share_checked_at = -SHARE_REFRESH_SECONDS
        self.workers = 1

    def check(self) -> Response | None:
        """before_request: count this request; a 429 problem once the client is past the limit."""
        endpoint = request.endpoint
        if endpoint is None:
            return None  # unrouted requests (404, 405) are not counted
        try:
            rule = self.rules[endpoint]
        except KeyError:
            rule = self.rules[endpoint] = self._rule_for(endpoint)
        if rule is None:
            return None
        identifiers = (self.client_key(request.remote_addr or ""), *rule.scope)
        if self.redis is not None:
            items = shared_items(rule.spec)
            try:
                return self.redis.run(lambda session: self._count(session.count, items, identifiers, 1))
            except RedisUnavailable:
                pass  # counted in memory below
            except RedisBusy:
                return problem_response(
                    503, "Too busy to count this request against the rate limit", headers={"Retry-After": "1"}
                )
        try:
            return self._count(self.memory.hit, self._local_items(rule.spec), identifiers, self.workers)
        except Exception:
            log.exception("Rate limit: counting failed; the request is served")
            return None

    def _rule_for(self, endpoint: str) -> Rule | None:
        view = current_app.view_functions.get(endpoint)
        specs = getattr(view, LIMITS_MARK, ())
        if specs:
            return Rule(";".join(specs), (endpoint, ROUTE_SCOPE))
        if self.default is None or getattr(view, EXEMPT_MARK, False):
            return None
        for name in request.blueprints:
            if name in self.exempt or getattr(current_app.blueprints.get(name), EXEMPT_MARK, False):
                return None
        return Rule(self.default, (endpoint,))

    def _local_items(self, spec: str) -> tuple[tuple[RateLimitItem, RateLimitItem], ...]:
        now = time.monotonic()
        if now - self.share_checked_at >= SHARE_REFRESH_SECONDS:
            self.share_checked_at = now
            self.workers = workers_in_replica()
        return worker_share(spec, self.workers)

    @staticmethod
    def _count(hit, items, identifiers, workers: int) -> Response | None:
        # FixedWindowRateLimiter.hit, with the window's end from the same call (one Redis round trip).
        # Limits after a breached one are not counted. `items` pairs the limit counted here with
        # the configured one clients are shown.
        # (counted limit, configured limit, its count, when its window ends): the first, or the one breached.
        shown = None
        for counted, configured in items:
            count, resets_at = hit(counted.key_for(*identifiers), counted.get_expiry(), 1)
            if shown is None or count > counted.amount:
                shown = (counted, configured, count, resets_at)
            if count > counted.amount:
                break
        counted, configured, count, resets_at = shown
        remaining = min(configured.amount, max(0, counted.amount - count) * workers)
        g.rate_limit = (configured.amount, remaining, resets_at)
        if count <= counted.amount:
            return None
        metrics.record_rate_limited(configured)
        return problem_response(429, f"Rate limit exceeded: {configured}")

    @staticmethod
    def add_headers(response: Response) -> Response:
        """after_request: the limit that applied, what is left of it, when it resets; Retry-After on a 429 only."""
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
    """Limit every route by client (see rate_limit_key), by its own limit or the default, except `exempt`."""
    uri = app.config["RATELIMIT_STORAGE_URI"]
    limiter = RateLimit(
        app.config["RATELIMIT_DEFAULT"],
        None if uri == "memory://" else uri,
        exempt,
        ipv6_prefix=app.config["SETTINGS"].rate_limit_ipv6_prefix,
    )
    app.extensions["rate_limiter"] = limiter
    # Without a default (RATE_LIMIT=off, or testing) the views' own limits still count.
    app.before_request(limiter.check)
    app.after_request(limiter.add_headers)
    return limiter


def redis_check(app: Flask) -> dict:
    """The limiter's store for readiness, in health+json's check shape (status pass, warn or fail, and why)."""
    counter = app.extensions["rate_limiter"].redis
    if counter is None:
        return {"componentType": "component", "status": "pass", "output": "counted in each worker's memory"}
    return counter.check()
