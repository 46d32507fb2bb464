"""gunicorn's gevent worker, with request deadlines, lingering error closes and eviction of idle connections.

- Near worker_connections, the oldest connection with no request in flight is
  closed, so idle clients cannot lock new ones out.
- Large bodies are read a few at a time; a body read yields between reads, so
  one fast upload cannot hold the worker's only thread.
- A kept-alive connection whose next request is already in lets the others
  take a turn first.

Imported only by gevent projects (cluster.workers loads it on first use, in the
master, which has patched everything but os and signal: gunicorn.conf.py).

gunicorn internals this relies on (checked at start by gunicorn_compat):
ggevent's GeventWorker (init_process, patch, run, handle, handle_request
raising StopIteration to close), and gevent.monkey.patch_module's private
_notify_*_subscribers arguments.
"""

import contextlib
import os
import signal
import socket
import threading
from functools import partial

import gevent
import gevent.os
import gevent.signal  # imported once here, in the master, not by each worker when it patches signal (~0.6 MB each)
import gevent.socket
from gevent import monkey
from gunicorn.workers.ggevent import GeventWorker as _GeventWorker

from .. import limits
from ..errors import linger
from .answers import AnswersClientErrors, refuse_for_now
from .per_process import install_request_handling
from .reading import body_left, has_large_body


class GeventWorker(AnswersClientErrors, _GeventWorker):
    """gevent, with request deadlines, lingering error closes and eviction of idle connections."""

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
        install_request_handling(cooperative=True)
        # Open connections, oldest first, and the ones with a request in flight.
        self.connections: dict = {}
        self.busy: set = set()
        super().init_process()

    def run(self):
        # Made here, after gevent patched threading: waiting for a turn blocks one greenlet only.
        self.large_bodies = threading.BoundedSemaphore(limits.GEVENT_LARGE_BODIES)
        # Waits for the loop's next pass; the highest priority makes that every pass, even a busy one.
        self.next_turn = partial(gevent.idle, gevent.get_hub().loop.MAXPRI)
        super().run()

    def handle(self, listener, client, addr):
        self._evict_if_full()
        self.connections[client] = None
        try:
            super().handle(listener, client, addr)
        finally:
            self.connections.pop(client, None)

    def handle_request(self, listener_name, req, sock, addr):
        self.busy.add(sock)
        large = has_large_body(req)
        if large and not self.large_bodies.acquire(timeout=limits.LARGE_BODY_WAIT):
            self.busy.discard(sock)
            self.log.warning(
                "Large body from ip=%s waited %ss for a turn: answered 429", addr[0], limits.LARGE_BODY_WAIT
            )
            refuse_for_now(sock)
            linger(sock)
            raise StopIteration()
        if large:
            req.unreader.await_body()  # the body's clock starts with its turn
        try:
            kept_alive = super().handle_request(listener_name, req, sock, addr)
        except StopIteration:
            # The answer closes the connection: let the client finish sending first.
            if body_left(req):
                linger(sock)
            raise
        finally:
            self.busy.discard(sock)
            if large:
                self.large_bodies.release()
        # A client's next request is often in before this one's answer is done, and
        # reading it would not wait, so this greenlet would serve its connection again
        # and again while the others wait (p99 of a second under load): take turns.
        self.next_turn()
        return kept_alive

    def _evict_if_full(self) -> None:
        excess = len(self.connections) - (self.worker_connections - limits.EVICTION_MARGIN)
        if excess < 0:
            return
        idle = [sock for sock in self.connections if sock not in self.busy][: excess + 1]
        for sock in idle:
            # Its greenlet, blocked reading, sees the end of the stream and closes it.
            self.connections.pop(sock, None)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
