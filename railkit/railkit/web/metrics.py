"""GET /metrics: Prometheus text for the whole replica, and the numbers each request adds.

Requests are counted by route template (the rule, never the raw path: unknown
paths share one label), method and status class. The master's events (worker
starts, deaths, recycles, aborts, back-off) are counted in cluster/metrics.py;
worker memory, the live worker count, the workers busy with a request and the
age of the oldest request are read from the board when scraped, so a request
pays for none of them (the board's busy times are kept for the watchdog anyway).

/metrics is not public. With METRICS_TOKEN it answers `Authorization: Bearer
<token>` from anywhere; without it, loopback and private addresses only (see
security.py for which address that is). Any other request is answered exactly
like an unknown path: the same 404 problem, the same rate limit.
"""

import functools
import hmac
import ipaddress
import time

from flask import Flask, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from ..seam import METRICS_PREFIX as PREFIX
from ..seam import current_board, unique_memory_mb
from ..seam import metrics_folder as current_folder
from ..seam import metrics_folder_lock as folder_lock
from .security import in_networks

PATH = "/metrics"
# The one label for every path no route matches, so scanners cannot grow the series.
UNMATCHED_ROUTE = "unmatched"
# Any other method is counted as "other", for the same reason.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Addresses allowed to scrape without a token: this host and the private
# ranges (RFC 1918, IPv6 unique local), Railway's private network among them.
PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in ("127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)
# Railway's edge stamps this on every public request; such a request is public
# whatever address it arrives from.
EDGE_HEADER = "X-Railway-Edge"

REQUESTS = Counter(
    f"{PREFIX}_http_requests_total",
    "Requests answered, by route template, method and status class",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    f"{PREFIX}_http_request_duration_seconds",
    "Time to answer a request, by route template and method",
    ["route", "method"],
)
RATE_LIMITED = Counter(f"{PREFIX}_rate_limited_total", "Requests refused with 429 by the rate limit")


class ClusterCollector:
    """Read at scrape time from the board: configured, live and busy workers, the oldest request, each worker's USS."""

    def collect(self):
        scoreboard = current_board()
        if scoreboard is None:
            return
        configured = GaugeMetricFamily(f"{PREFIX}_workers_configured", "Workers the master keeps running")
        configured.add_metric([], scoreboard.master()[1])
        workers = scoreboard.workers()
        live = GaugeMetricFamily(f"{PREFIX}_workers_live", "Workers up and serving")
        live.add_metric([], len(workers))
        now = time.time()
        busy_since = [slot.busy_since for slot in workers if slot.busy_since]
        busy = GaugeMetricFamily(
            f"{PREFIX}_workers_busy", "Workers whose app is working on a request right now (a sample, at scrape time)"
        )
        busy.add_metric([], len(busy_since))
        oldest = GaugeMetricFamily(
            f"{PREFIX}_oldest_request_age_seconds", "How long the app has worked on its oldest request (0: idle)"
        )
        oldest.add_metric([], max(0.0, now - min(busy_since)) if busy_since else 0.0)
        memory = GaugeMetricFamily(
            f"{PREFIX}_worker_memory_uss_bytes", "Memory only each worker holds (USS), by slot", labels=["worker"]
        )
        for slot in workers:
            used = unique_memory_mb(slot.pid)
            if used is not None:
                memory.add_metric([str(slot.index + 1)], used * 2**20)
        yield from (configured, live, busy, oldest, memory)


class _LockedMultiProcessCollector(MultiProcessCollector):
    """Reads every process's files while the master is not folding a dead worker's."""

    def collect(self):
        with folder_lock(current_folder(), exclusive=False):
            return super().collect()


def exposition() -> bytes:
    """The replica's metrics in Prometheus text format."""
    registry = CollectorRegistry()
    registry.register(ClusterCollector())
    if current_folder() is None:
        # Outside gunicorn (flask run, tests): this process's own numbers.
        return generate_latest(REGISTRY) + generate_latest(registry)
    _LockedMultiProcessCollector(registry)
    return generate_latest(registry)


def is_private(address: str | None) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return in_networks(ip, PRIVATE_NETWORKS)


def scrape_allowed() -> bool:
    """Whether this request may read /metrics (worked out once per request)."""
    if "metrics_scrape" not in g:
        g.metrics_scrape = request.path == PATH and request.method in ("GET", "HEAD") and _authorized()
    return g.metrics_scrape


def _authorized() -> bool:
    token = current_app.config["SETTINGS"].metrics_token
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
    return EDGE_HEADER not in request.headers and is_private(request.remote_addr)


def start_request() -> Response | None:
    """Time the request; answer it if it is an allowed scrape.

    One hook for both: Flask's cost per hook is more than either's work.
    """
    g.metrics_started = time.perf_counter()
    return serve_scrape()


def serve_scrape() -> Response | None:
    """Answer an allowed scrape; anything else goes on to routing, which answers 404."""
    if request.path == PATH and scrape_allowed():
        # content_type, not mimetype: CONTENT_TYPE_LATEST carries its charset already.
        return Response(exposition(), content_type=CONTENT_TYPE_LATEST)
    return None


def count_response(response: Response) -> Response:
    elapsed = time.perf_counter() - g.metrics_started
    current = request._get_current_object()
    route = current.url_rule.rule if current.url_rule else UNMATCHED_ROUTE
    if g.get("metrics_scrape"):
        route = PATH
    method = current.method if current.method in KNOWN_METHODS else "other"
    counted, timed = _children(route, method, response.status_code // 100)
    counted.inc()
    timed.observe(elapsed)
    return response


@functools.cache
def _children(route: str, method: str, status_class: int) -> tuple:
    # Looking a labelled child up takes a lock and builds a key; the set of
    # routes, methods and classes is small, so each pair is found once.
    return REQUESTS.labels(route, method, f"{status_class}xx"), LATENCY.labels(route, method)


def record_rate_limited(_limit) -> None:
    """Called by the rate limit for each request it refuses."""
    RATE_LIMITED.inc()


def init_app(app: Flask) -> None:
    """Count every request and serve /metrics; call before any other before_request hook that answers."""
    app.before_request(start_request)
    app.after_request(count_response)
