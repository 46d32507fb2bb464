"""gunicorn's gevent worker, with request deadlines, lingering error closes and eviction of idle connections.

- A worker holds as many connections as its open-files limit allows
  (open_files.py). Near that capacity it closes kept-alive connections idle
  for limits.IDLE_EVICTION_SECONDS, oldest first, never one whose next
  request is arriving and never one still waiting for its first.
- Large bodies are read one at a time (a chunked one once it grows past
  limits.LARGE_BODY_BYTES); a body read yields between reads, so one fast
  upload cannot hold the worker's only thread.
- gevent's own server survives accept() running out of descriptors: it
  stops accepting and retries after a growing delay.
- A kept-alive connection whose next request is already in lets the others
  take a turn first.

Imported only by gevent projects (cluster.workers loads it on first use, in the
master, which has patched everything but os and signal: gunicorn.conf.py).

gunicorn internals this relies on (checked at start by gunicorn_compat):
ggevent's GeventWorker (init_process, patch, run, handle, handle_request
raising StopIteration to close, worker_connections read by run() as its
pool's size), and gevent.monkey.patch_module's private
_notify_*_subscribers arguments.
"""

import contextlib
import os
import signal
import socket
import threading
import time
from functools import partial

import gevent
import gevent.os
import gevent.signal  # imported once here, in the master, not by each worker when it patches signal (~0.6 MB each)
import gevent.socket
from gevent import monkey
from gunicorn.workers.ggevent import GeventWorker as _GeventWorker

from .. import limits, open_files
from ..errors import BodyWaitedTooLong, linger
from ..hooks import require_platform_hooks
from . import reading
from .answers import AnswersClientErrors, refuse_for_now
from .per_process import install_request_handling
from .reading import body_left, has_large_body

# The real poll: gevent's would yield to other greenlets while eviction looks at a connection.
_poll = monkey.get_original("select", "poll")


class GeventWorker(AnswersClientErrors, _GeventWorker):
    """gevent, with request deadlines, lingering error closes and eviction of idle connections."""

    closes_abruptly = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.worker_connections = open_files.connection_capacity(self.cfg.worker_connections)

    @classmethod
    def check_config(cls, cfg, log):
        """gunicorn's own check, if the class has one; then refuse a start without the platform's hooks."""
        parent = getattr(super(), "check_config", None)
        if parent is not None:
            parent(cfg, log)
        require_platform_hooks(cfg)

    def patch(self):
        """Patch what the master left alone (os, signal: gunicorn.conf.py), and take the listeners as gevent's.

        gunicorn's own patch runs monkey.patch_all() again in each worker: it patches
        every module again and announces each patch to gevent's plugins, each time
        reading every installed package's entry points (~2.5 MB per worker).
        """
        if not monkey.is_module_patched("socket"):  # not started through gunicorn.conf.py
            super().patch()
            return
        # What monkey.patch_os() and patch_signal() do, minus the announcements (no package here listens).
        quietly = {"_notify_will_subscribers": False, "_notify_did_subscribers": False}
        monkey.patch_module(os, gevent.os, **quietly)
        monkey.patch_module(signal, gevent.signal, **quietly)
        self.sockets = [
            gevent.socket.socket(listener.FAMILY, gevent.socket.SOCK_STREAM, fileno=listener.sock.detach())
            for listener in self.sockets
        ]

    def init_process(self):
        install_request_handling(cooperative=True, stalled_writers=limits.GEVENT_STALLED_WRITERS)
        reading.admit_large_body = self._admit_chunked_body
        # Open connections, oldest first: when each went idle after a request (None: a request is due or in flight).
        self.connections: dict = {}
        super().init_process()

    def run(self):
        # Made here, after gevent patched threading: waiting for a turn blocks one greenlet only.
        self.large_bodies = threading.BoundedSemaphore(limits.GEVENT_LARGE_BODIES)
        # Waits for the loop's next pass; the highest priority makes that every pass, even a busy one.
        self.next_turn = partial(gevent.idle, gevent.get_hub().loop.MAXPRI)
        gevent.spawn(self._make_room_every_second)
        super().run()

    def handle(self, listener, client, addr):
        self.connections[client] = None
        try:
            super().handle(listener, client, addr)
        finally:
            self.connections.pop(client, None)

    def _admit_chunked_body(self, req) -> None:
        """A chunked body grew past limits.LARGE_BODY_BYTES: wait for its turn, as a large declared body does."""
        if getattr(req, "holds_large_body", False):
            return
        if not self.large_bodies.acquire(timeout=limits.LARGE_BODY_WAIT):
            raise BodyWaitedTooLong(f"Too many large bodies are being read; waited {limits.LARGE_BODY_WAIT}s")
        req.holds_large_body = True

    def handle_request(self, listener_name, req, sock, addr):
        self.connections.pop(sock, None)
        self.connections[sock] = None  # busy: never evicted
        large = has_large_body(req)
        if large and not self.large_bodies.acquire(timeout=limits.LARGE_BODY_WAIT):
            self.log.warning(
                "Large body from ip=%s waited %ss for a turn: answered 429", addr[0], limits.LARGE_BODY_WAIT
            )
            refuse_for_now(sock)
            linger(sock)
            raise StopIteration()
        if large:
            req.unreader.await_body()  # the body's clock starts with its turn
            req.holds_large_body = True
        try:
            kept_alive = super().handle_request(listener_name, req, sock, addr)
        except StopIteration:
            # The answer closes the connection: let the client finish sending first.
            if body_left(req):
                linger(sock)
            raise
        finally:
            if getattr(req, "holds_large_body", False):
                self.large_bodies.release()
        if sock in self.connections:
            self.connections.pop(sock)
            self.connections[sock] = time.monotonic()  # idle from now, the newest
        # A client's next request is often in before this one's answer is done, and
        # reading it would not wait, so this greenlet would serve its connection again
        # and again while the others wait (p99 of a second under load): take turns.
        self.next_turn()
        return kept_alive

    def _make_room_every_second(self) -> None:
        while self.alive:
            gevent.sleep(1.0)
            self._make_room(time.monotonic())

    def _make_room(self, now: float) -> None:
        """Near capacity, close kept-alive connections idle long enough, oldest first, never one with bytes waiting."""
        room = max(1, self.worker_connections // 100)
        excess = len(self.connections) - (self.worker_connections - room)
        if excess < 0:
            return
        idle_before = now - limits.IDLE_EVICTION_SECONDS
        victims = []
        for sock, idle_since in self.connections.items():
            if len(victims) > excess:
                break
            if idle_since is not None and idle_since <= idle_before and not _bytes_waiting(sock):
                victims.append(sock)
        for sock in victims:
            # Its greenlet, blocked reading, sees the end of the stream and closes it.
            self.connections.pop(sock, None)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if victims:
            self.log.info(
                "At capacity (%s connections): closed %s kept-alive ones idle for %ss or more",
                self.worker_connections,
                len(victims),
                limits.IDLE_EVICTION_SECONDS,
            )


def _bytes_waiting(sock) -> bool:
    """Whether a request (or its end) is on its way on this socket: readable now."""
    poll = _poll()
    poll.register(sock.fileno(), 1)  # POLLIN
    return bool(poll.poll(0))
