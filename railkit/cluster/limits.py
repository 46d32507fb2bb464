"""Timeouts and request limits: the settings that protect a worker from its clients."""

import os

# gunicorn's own `timeout`: a worker whose heartbeat stops this long is killed.
# gthread and gevent workers beat while serving, so this only catches a frozen
# worker; the app's time per request is REQUEST_TIMEOUT, watched by watchdog.py.
HEARTBEAT_TIMEOUT = 30
# Railway's edge closes idle keep-alive connections after 60 s; staying open a
# little longer means the edge, not the server, closes them, so no request
# races a connection we are closing.
KEEPALIVE = 65
# Recycle each worker after this many requests (a leak cannot grow forever);
# the jitter keeps all workers from restarting at once.
MAX_REQUESTS = 10_000
MAX_REQUESTS_JITTER = 1_000
# A gthread worker closes a keep-alive connection after this many requests
# (nginx's keepalive_requests default since 1.19.10; 100 before, which made
# busy clients reconnect several times a second). Its client reconnects, and
# may land on another worker: a proxy's few long-lived connections cannot pin
# all traffic on one. (gevent workers keep theirs: reconnects only add to their accept queue.)
MAX_REQUESTS_PER_CONNECTION = 1000
# Connections waiting to be accepted; beyond this the kernel refuses them.
BACKLOG = 2048
# Open connections per gthread or gevent worker, idle keep-alive ones included.
WORKER_CONNECTIONS = 1000
# Request line and headers: Railway's edge allows 32 KB of headers in all.
LIMIT_REQUEST_LINE = 8190
LIMIT_REQUEST_FIELDS = 100
LIMIT_REQUEST_FIELD_SIZE = 8190

# Slow and silent clients (cluster/workers/). The request line and headers
# must arrive within this many seconds, counted from the connection's first
# byte (from the accept for a new connection): a total, not a per-read timeout.
HEADER_TIMEOUT = 10
# The whole body must arrive within this many seconds of its headers. Shorter
# than REQUEST_TIMEOUT, so a slow upload gets a 408 and never looks like a
# stuck request that aborts its worker.
BODY_TIMEOUT = 20
# A request head buffered without a thread is handed to one at this size even
# unfinished; gunicorn's parser then answers 414/431 or reads the rest.
MAX_BUFFERED_HEAD = 64 * 1024
# When a worker is this close to WORKER_CONNECTIONS, it closes its oldest
# connection that has no request in flight (idle, or still sending its head),
# so idle clients cannot lock new ones out.
EVICTION_MARGIN = 50
# A gthread worker reads at most GTHREAD_LARGE_BODIES bodies over this size at
# once (and never on its last thread), so raw uploads stay bounded however many
# threads it runs and small requests (/health among them) always find a thread;
# the other large ones wait, unread, up to LARGE_BODY_WAIT seconds (then 429).
LARGE_BODY_BYTES = 2**20
LARGE_BODY_WAIT = 10
GTHREAD_LARGE_BODIES = 3
# A gevent worker runs every request on one thread, and parsing a large body
# holds it: it reads one large body at a time, so its loop stays responsive.
GEVENT_LARGE_BODIES = 1
# Lingering close after an error answer: read (and discard) what the client
# still sends for up to this long, this much, pausing at most LINGER_IDLE_SECONDS.
LINGER_SECONDS = 5.0
LINGER_MAX_BYTES = 64 * 2**20
LINGER_IDLE_SECONDS = 1.0


def heartbeat_timeout(worker_class: str, request_timeout: int) -> int:
    """gunicorn's `timeout` for this worker class (0 turns it off).

    A sync worker beats only between requests, so its heartbeat timeout is
    also its request timeout: it follows REQUEST_TIMEOUT, off included.
    """
    return request_timeout if worker_class == "sync" else HEARTBEAT_TIMEOUT


def heartbeat_dir() -> str | None:
    """A RAM-backed folder for worker heartbeats: a slow disk causes false timeouts."""
    return "/dev/shm" if os.path.isdir("/dev/shm") else None
