"""gunicorn's gthread worker, where a connection waits for its request head in the event loop.

- A connection only takes a pool thread once its head has arrived: an idle or
  silent connection costs a file descriptor, never a thread.
- A thread that answered a kept-alive connection waits a few milliseconds for
  its next request and serves it too, while the pool has threads to spare; a
  head that is not whole at once goes back to the loop.
- Near worker_connections, the oldest connection with no request in flight is
  closed, so idle clients cannot lock new ones out.
- Large bodies (over limits.LARGE_BODY_BYTES) are read a few at a time, so
  small requests (/health) always find a thread.
- Error answers close lingeringly in the loop (RFC 9112 section 9.6), so a
  client still sending a refused body reads its 413 instead of a reset.

gunicorn internals this relies on (checked at start by gunicorn_compat): TConn
and ThreadWorker (accept, on_client_socket_readable, enqueue_req,
finish_request, murder_pending, nr_conns, worker_connections, poller,
keepalived_conns, and handle() trusting conn.data_ready and a ready
conn.parser, returning True for a kept-alive connection),
STOP_KEEPALIVE_LINGER, negotiation.prior_knowledge_allowed, util.close.
"""

import contextlib
import errno
import re
import select
import selectors
import socket
import time
from collections import deque
from functools import partial

import gunicorn.http
from gunicorn import util
from gunicorn.http2 import negotiation
from gunicorn.workers import gthread

from .. import limits
from ..errors import ClientError, HeadTimeout, write_problem
from .answers import AnswersClientErrors, refuse_for_now
from .per_process import install_request_handling

# Bytes read at once while a request head is buffered.
HEAD_READ_SIZE = 65536
# A request head ends with an empty line.
END_OF_HEAD = b"\r\n\r\n"
# The body's size as a request head declares it: a Content-Length, or chunked (unknown, so large).
DECLARED_BODY = re.compile(rb"\r\n(?:content-length[ \t]*:[ \t]*(\d+)|transfer-encoding[ \t]*:[^\r\n]*chunked)", re.I)

# How long a gthread thread that just answered a kept-alive connection waits for its next request (ms):
# long enough for a busy client on a loaded host, short enough that an idle one hardly holds the thread.
NEXT_REQUEST_WAIT_MS = 5

# What a pool thread returns when the next request's head it began reading is the event loop's to finish.
_HEAD_TO_LOOP = object()
# A kept-alive connection's next request is in its parser's buffer: the thread serves it too.
_SERVE_HERE = object()


def _recv_now(sock: socket.socket) -> bytes | None:
    """What the socket has for us without waiting: None when nothing yet, b"" when it ended (or failed)."""
    try:
        return sock.recv(HEAD_READ_SIZE, socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return b""


def declares_large_body(head: bytes) -> bool:
    """Whether a request head announces a body over limits.LARGE_BODY_BYTES (chunked counts as large)."""
    for match in DECLARED_BODY.finditer(head):
        if match.group(1) is None or int(match.group(1)) > limits.LARGE_BODY_BYTES:
            return True
    return False


def head_is_complete(head: bytearray, searched: int = 0) -> bool:
    """Whether a buffered head is ready for the parser: whole, too long, or with a bare LF (which it refuses)."""
    if head.find(END_OF_HEAD, searched) >= 0 or len(head) >= limits.MAX_BUFFERED_HEAD:
        return True
    return head.count(b"\n") != head.count(b"\r\n")


class _Conn(gthread.TConn):
    """A gthread connection that can wait for its head, and close lingeringly, in the event loop."""

    def __init__(self, cfg, sock, client, server, worker):
        super().__init__(cfg, sock, client, server)
        self.worker = worker
        self.head = bytearray()
        self.deadline = 0.0
        self.lingered = 0
        # TLS and HTTP/2 prior knowledge read their first bytes themselves: gunicorn's own path.
        self.buffers_head = not cfg.is_ssl and not negotiation.prior_knowledge_allowed(cfg, client)

    def close(self, graceful=False):
        if graceful:
            self.worker.linger(self)
        else:
            super().close()


class GthreadWorker(AnswersClientErrors, gthread.ThreadWorker):
    """gthread, where connections wait for their request head in the event loop, not in a thread."""

    lingers_in_handler = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Connections waiting for their head, and closing ones, oldest first.
        self.heads: dict[_Conn, None] = {}
        self.lingering: dict[_Conn, None] = {}
        # Connections with a large body: how many are being read, and the ones waiting their turn.
        self.large_slots = max(1, min(limits.GTHREAD_LARGE_BODIES, self.cfg.threads - 1))
        self.large_in_flight: set[_Conn] = set()
        self.large_waiting: deque[_Conn] = deque()
        # One item per connection waiting for a pool thread, and per thread serving one
        # (counted in deques: their appends and pops are thread-safe).
        self.queued: deque[None] = deque()
        self.running: deque[None] = deque()

    def init_process(self):
        install_request_handling()
        super().init_process()

    def accept(self, listener):
        try:
            client_sock, client_addr = listener.accept()
        except OSError as error:
            if error.errno in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                return
            raise
        self.nr_conns += 1
        conn = _Conn(self.cfg, client_sock, client_addr, listener.getsockname(), self)
        self._evict_if_full()
        if not conn.buffers_head:
            client_sock.setblocking(True)
            self.enqueue_req(conn)
            return
        self._await_head(conn, time.monotonic() + limits.HEADER_TIMEOUT)

    def on_client_socket_readable(self, conn, client):
        """A kept-alive connection sends its next request: buffer its head in the loop too."""
        if not getattr(conn, "buffers_head", False):
            super().on_client_socket_readable(conn, client)
            return
        self.keepalived_conns.remove(conn)
        self._start_head(conn, time.monotonic() + limits.HEADER_TIMEOUT)
        # Read while still registered: usually the whole head is here, and the socket
        # leaves the poller once (to its thread) instead of being registered again first.
        self._read_head(conn, client)
        if conn in self.heads:  # the rest of the head is still on its way
            self.poller.modify(client, selectors.EVENT_READ, partial(self._read_head, conn))

    def _start_head(self, conn: _Conn, deadline: float) -> None:
        conn.head = bytearray()
        conn.deadline = deadline
        self.heads[conn] = None

    def _await_head(self, conn: _Conn, deadline: float) -> None:
        self._start_head(conn, deadline)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._read_head, conn))

    def _read_head(self, conn: _Conn, _sock) -> None:
        data = _recv_now(conn.sock)
        if data is None:
            return
        if not data:
            self._drop_head(conn)
            return
        searched = max(0, len(conn.head) - 3)
        conn.head += data
        if head_is_complete(conn.head, searched):
            self._hand_to_thread(conn)

    def _hand_to_thread(self, conn: _Conn) -> None:
        del self.heads[conn]
        self.poller.unregister(conn.sock)
        if conn.parser is None:
            conn.parser = gunicorn.http.get_parser(self.cfg, conn.sock, conn.client)
        head = bytes(conn.head)
        conn.parser.unreader.unread(head)
        conn.head = bytearray()
        conn.data_ready = True
        if declares_large_body(head):
            conn.deadline = time.monotonic() + limits.LARGE_BODY_WAIT
            self.large_waiting.append(conn)
            self._start_large_bodies()
        else:
            self.enqueue_req(conn)

    def enqueue_req(self, conn):
        self.queued.append(None)
        super().enqueue_req(conn)

    def handle(self, conn):
        """Serve the connection's request, then its next ones while they follow at once (in a pool thread)."""
        self.queued.pop()
        self.running.append(None)
        try:
            result = super().handle(conn)
            while result is True:
                waited = self._next_request(conn)
                if waited is not _SERVE_HERE:
                    return waited
                result = super().handle(conn)
            return result
        finally:
            self.running.pop()

    def _next_request(self, conn: _Conn):
        """Wait a moment, in this thread, for the next request of a kept-alive connection.

        A client that asks again at once is served again without its socket
        going through the event loop and the pool's queue: each hand-over
        costs system calls and GIL switches between threads. The thread only
        waits while every queued connection has a thread of its own, and only
        for a head that arrives whole; anything else goes back to the loop,
        with its deadline. Returns _SERVE_HERE when the head is in the
        parser's buffer, else what finish_request expects: True (an idle
        kept-alive connection) or _HEAD_TO_LOOP (a head begun here).
        """
        if not (self.alive and conn.buffers_head) or conn in self.large_in_flight:
            return True  # stopping, not plain HTTP/1, or holding a large body's slot
        if conn.parser.unreader.buf.getbuffer().nbytes or len(self.running) + len(self.queued) > self.cfg.threads:
            return True  # pipelined (gunicorn's path), or a connection needs this thread
        data = _recv_now(conn.sock)  # often here already: no need to wait
        if data is None:
            poll = select.poll()
            poll.register(conn.sock, select.POLLIN)
            if not poll.poll(NEXT_REQUEST_WAIT_MS):
                return True
            data = _recv_now(conn.sock)
            if data is None:
                return True
        conn.deadline = time.monotonic() + limits.HEADER_TIMEOUT
        conn.head = bytearray(data)
        if not data or not head_is_complete(conn.head) or declares_large_body(conn.head):
            return _HEAD_TO_LOOP  # the end of the stream, a slow head, or a large body
        conn.parser.unreader.unread(data)
        conn.head = bytearray()
        return _SERVE_HERE

    def _start_large_bodies(self) -> None:
        while self.large_waiting and len(self.large_in_flight) < self.large_slots:
            conn = self.large_waiting.popleft()
            self.large_in_flight.add(conn)
            self.enqueue_req(conn)

    def finish_request(self, conn, fs):
        if conn in self.large_in_flight:
            self.large_in_flight.discard(conn)
            self._start_large_bodies()
        if not fs.cancelled() and fs.exception() is None and fs.result() is _HEAD_TO_LOOP:
            # The loop reads the rest of the head its thread began, against the same deadline.
            conn.sock.setblocking(False)
            head = conn.head
            self._await_head(conn, conn.deadline)
            conn.head = head
            if head_is_complete(head):  # with a large body, which waits for its turn
                self._hand_to_thread(conn)
            return
        super().finish_request(conn, fs)

    def _drop_head(self, conn: _Conn, answer: ClientError | None = None) -> None:
        self.heads.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)
        self.nr_conns -= 1
        if answer is not None:
            self.log.warning("Invalid request from ip=%s: %s", conn.client[0] if conn.client else "", answer)
            with contextlib.suppress(OSError):
                write_problem(conn.sock, answer.status, answer.reason, str(answer))
            self.linger(conn)
        else:
            util.close(conn.sock)

    def _evict_if_full(self) -> None:
        """Close the oldest connections with no request in flight while the worker is nearly full."""
        while self.nr_conns > self.worker_connections - limits.EVICTION_MARGIN:
            if self.heads:
                self._drop_head(next(iter(self.heads)))
            elif self.keepalived_conns:
                conn = self.keepalived_conns.popleft()
                with contextlib.suppress(KeyError, ValueError, OSError):
                    self.poller.unregister(conn.sock)
                self.nr_conns -= 1
                conn.close()
            else:
                return

    def linger(self, conn: _Conn) -> None:
        """Close lingeringly without holding the loop: stop writing, then read and discard as it arrives."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
            conn.sock.setblocking(False)
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._drain, conn))
        except (OSError, ValueError, KeyError):
            util.close(conn.sock)
            return
        conn.deadline = time.monotonic() + limits.LINGER_SECONDS
        conn.lingered = 0
        self.lingering[conn] = None

    def _drain(self, conn: _Conn, _sock) -> None:
        data = _recv_now(conn.sock)
        if data is None:
            return
        conn.lingered += len(data)
        if not data or conn.lingered >= limits.LINGER_MAX_BYTES:
            self._end_linger(conn)

    def _end_linger(self, conn: _Conn) -> None:
        self.lingering.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)
        util.close(conn.sock)

    def murder_pending(self):
        """gunicorn's check for expired connections, plus heads and lingering closes past their deadline."""
        super().murder_pending()
        now = time.monotonic()
        if not self.alive:
            # Stopping: a head still on its way gets a little time, as kept-alive connections do.
            stop_by = now + gthread.STOP_KEEPALIVE_LINGER
            for conn in self.heads:
                conn.deadline = min(conn.deadline, stop_by)
        for conn in [conn for conn in self.heads if conn.deadline <= now]:
            if conn.head:
                self._drop_head(conn, HeadTimeout(f"The request head did not arrive within {limits.HEADER_TIMEOUT}s"))
            else:
                self._drop_head(conn)
        for conn in [conn for conn in self.lingering if conn.deadline <= now]:
            self._end_linger(conn)
        while self.large_waiting and self.large_waiting[0].deadline <= now:
            conn = self.large_waiting.popleft()
            self.nr_conns -= 1
            self.log.warning(
                "Large body from ip=%s waited %ss for a turn: answered 429", conn.client[0], limits.LARGE_BODY_WAIT
            )
            refuse_for_now(conn.sock)
            self.linger(conn)
