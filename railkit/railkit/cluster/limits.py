"""Timeouts and request limits: the settings that protect a worker from its clients."""

import os

# gunicorn's own `timeout`: a worker whose heartbeat stops this long is killed.
# gthread and gevent workers beat while serving, so this only catches a frozen
# worker; the app's time per request is REQUEST_TIMEOUT, watched by watchdog.py.
HEARTBEAT_TIMEOUT = 30
# How long an idle kept-alive connection stays open. Railway's edge closes its
# idle connections to the app after 60 s. A proxy that reuses a connection the
# server is closing at that very moment sends its request into a connection
# that is gone (an EOF, a 502 for its client); the server's timeout is longer
# than the proxy's, so the edge always closes first and no request races our
# close (the same reason AWS asks for an app timeout above the ALB's).
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
# Open connections per gthread or gevent worker, idle kept-alive ones included,
# at most: a worker holds as many as its open-files limit allows (open_files.py),
# up to this many (the edge's own limit of concurrent connections per domain).
WORKER_CONNECTIONS = 10_000
# Descriptors a worker keeps for everything but its clients: listeners, pipes,
# the heartbeat file, logs, Redis and whatever files the app opens.
RESERVED_FILES = 128
# A worker at its connection capacity closes kept-alive connections idle at
# least this long, oldest first, and never one with a request on its way. A
# client that asks every few seconds keeps its connection; one that went quiet
# makes room. Below capacity, only KEEPALIVE closes an idle connection.
IDLE_EVICTION_SECONDS = 15
# accept() out of descriptors (EMFILE, ENFILE) or kernel memory: the worker
# stops accepting this long, as nginx does, instead of crashing or spinning.
ACCEPT_PAUSE_SECONDS = 0.5
# Request line and headers: Railway's edge allows 32 KB of headers in all.
LIMIT_REQUEST_LINE = 8190
LIMIT_REQUEST_FIELDS = 100
LIMIT_REQUEST_FIELD_SIZE = 8190
# Every header line together (the request line apart), at most: the edge's 32 KB, and room
# for the few headers the edge adds itself (X-Forwarded-*, X-Railway-*, X-Request-Start).
# gunicorn's own bound is LIMIT_REQUEST_FIELDS x LIMIT_REQUEST_FIELD_SIZE, about 800 KB.
LIMIT_REQUEST_HEADER_BYTES = 33 * 1024

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
# An answer the client does not read: a write that makes no progress for this
# long cuts the connection. Railway's edge cuts a request after 5 minutes with
# no data flowing, so an edge that passes its client's back-pressure through
# could pin a thread that long; 30 s is far below that, and above what a live
# client on a bad link stalls for (TCP's retransmission back-off reaches 31 s
# after 5 lost tries, so a link that recovers within it is kept).
WRITE_STALL_SECONDS = 30
# And however many clients stall at once, a gthread worker lets at most this
# share of its threads wait on them: when one more stalls, the connection
# stalled longest is cut, so the other threads always serve (/health among them).
STALLED_THREADS_SHARE = 0.5
# A gevent worker keeps at most this many stalled answers: each holds its answer in memory, and a
# worker over WORKER_MAX_MEMORY_MB is recycled (every client of it cut).
GEVENT_STALLED_WRITERS = 16
# A declared body the app did not read is discarded, and its connection kept
# alive, only when it has all arrived already and is at most this large;
# otherwise the answer says `Connection: close` and nothing waits for the body.
DISCARD_BODY_BYTES = 64 * 2**10


def heartbeat_timeout(worker_class: str, request_timeout: int) -> int:
    """gunicorn's `timeout` for this worker class (0 turns it off).

    A sync worker beats only between requests, so its heartbeat timeout is
    also its request timeout: it follows REQUEST_TIMEOUT, off included.
    """
    return request_timeout if worker_class == "sync" else HEARTBEAT_TIMEOUT


def heartbeat_dir() -> str | None:
    """A RAM-backed folder for worker heartbeats: a slow disk causes false timeouts."""
    return "/dev/shm" if os.path.isdir("/dev/shm") else None
