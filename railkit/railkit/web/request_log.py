"""Request ids and the access log, kept under Railway's 500 log lines per second.

The id comes from Railway's edge (X-Railway-Request-Id, shown as @requestId in
Railway's HTTP logs), else from a well-formed X-Request-ID, else it is made
here. It is echoed back and stamped on every log line of the request.
"""

import logging
import os
import time

from flask import Flask, Response, current_app, g, request

from ..logs import request_id
from ..request_ids import INCOMING_HEADERS, VALID_ID
from ..seam import workers_in_replica
from .security import PEER_ADDR_KEY

log = logging.getLogger(__name__)

# The same, as the WSGI environ names them: read there, since a missing
# header read through request.headers raises and catches an exception.
INCOMING_ENVIRON_KEYS = tuple("HTTP_" + name.upper().replace("-", "_") for name in INCOMING_HEADERS)
# Requests slower than this are logged even in "problems" mode.
SLOW_REQUEST_MS = 1000
# Railway drops a replica's log lines past 500 per second. The access log of
# the whole replica stays under this share of it; the rest is for other logs.
ACCESS_LINES_PER_SECOND = 200
UNLOGGED_PATHS = ("/health", "/health/ready")
# How the dual-stack [::] socket reports an IPv4 peer: logged as the IPv4 address it is.
IPV4_MAPPED_PREFIX = "::ffff:"


def readable_address(address: str | None) -> str | None:
    """`::ffff:10.0.0.7` as `10.0.0.7`, so one client reads the same on either socket."""
    if address and address.startswith(IPV4_MAPPED_PREFIX) and "." in address:
        return address[len(IPV4_MAPPED_PREFIX) :]
    return address


class LineBudget:
    """This worker's share of the replica's access-log lines per second.

    The share is recomputed each second from the cluster's worker count, since
    the app is built in the master before any worker exists. Counting is
    approximate under threads, which is fine for a budget.
    """

    def __init__(self, replica_per_second: int, clock=time.monotonic):
        self.replica_per_second = replica_per_second
        self.clock = clock
        self.window = 0
        self.allowed = 0
        self.used = 0
        self.skipped = 0

    def allow(self) -> bool:
        now = int(self.clock())
        if now != self.window:
            if self.skipped:
                log.warning("Access log: %s lines skipped to stay under Railway's rate", self.skipped)
            self.window, self.used, self.skipped = now, 0, 0
            self.allowed = max(1, self.replica_per_second // workers_in_replica())
        if self.used < self.allowed:
            self.used += 1
            return True
        self.skipped += 1
        return False


def choose_request_id() -> str:
    environ = request.environ
    for key in INCOMING_ENVIRON_KEYS:
        candidate = environ.get(key)
        if candidate and VALID_ID.match(candidate):
            return candidate
    return os.urandom(16).hex()  # 128 random bits, as a uuid4's hex, without building a UUID


def start_request() -> None:
    g.request_id = choose_request_id()
    g.request_started = time.perf_counter()
    g.request_id_token = request_id.set(g.request_id)


def finish_request(response: Response) -> Response:
    response.headers["X-Request-ID"] = g.request_id
    duration_ms = (time.perf_counter() - g.request_started) * 1000
    if _should_log(response.status_code, duration_ms) and current_app.extensions["access_log_budget"].allow():
        level = logging.WARNING if response.status_code >= 500 else logging.INFO
        log.log(
            level,
            "%s %s %s %.0fms",
            request.method,
            request.path,
            response.status_code,
            duration_ms,
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round(duration_ms, 1),
                "client_ip": readable_address(request.remote_addr),
                # The proxy that named the client: what FORWARDED_ALLOW_IPS would list.
                **(
                    {"peer_ip": readable_address(request.environ[PEER_ADDR_KEY])}
                    if PEER_ADDR_KEY in request.environ
                    else {}
                ),
            },
        )
    return response


def _should_log(status: int, duration_ms: float) -> bool:
    mode = current_app.config["ACCESS_LOG"]
    if mode == "off":
        return False
    if mode != "all" and status < 500 and status != 429 and duration_ms < SLOW_REQUEST_MS:
        return False  # "problems": most requests stop here, before the path is read
    return request.path not in UNLOGGED_PATHS and not g.get("metrics_scrape")


def end_request(_error=None) -> None:
    token = g.pop("request_id_token", None)
    if token is not None:
        request_id.reset(token)


def init_app(app: Flask) -> None:
    app.extensions["access_log_budget"] = LineBudget(ACCESS_LINES_PER_SECOND)
    app.before_request(start_request)
    app.after_request(finish_request)
    app.teardown_request(end_request)
