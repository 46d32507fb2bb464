"""gunicorn's gthread worker, where a connection waits for its request head in the event loop.

- A connection only takes a pool thread once its head has arrived: an idle or
  silent connection costs a file descriptor, never a thread.
- A thread that answered a kept-alive connection waits a few milliseconds for
  its next request and serves it too, while the pool has threads to spare; a
  head that is not whole at once goes back to the loop.
- A worker holds as many connections as its open-files limit allows
  (open_files.py). At that capacity it closes kept-alive connections idle for
  limits.IDLE_EVICTION_SECONDS, oldest first, never one whose next request is
  arriving and never one still waiting for its first; with none to close, it
  stops accepting and its siblings take the new clients.
- A worker holding well over its share of the connections lets its siblings
  accept (balance.py).
- A stopping worker lets go of the listening sockets at once, so new clients
  are refused instead of waiting for its last request (listeners.py).
- accept() out of descriptors (EMFILE, ENFILE) pauses accepting for
  limits.ACCEPT_PAUSE_SECONDS and says so once, as nginx does.
- A thread only waits for a body that has not arrived within the worker's body
  admission (BodyAdmission): bytes, and a share of the threads. Large bodies
  (over limits.LARGE_BODY_BYTES) are read a few at a time; the others wait
  unread in the loop, so small requests (/health) always find a thread.
- Error answers close lingeringly in the loop (RFC 9112 section 9.6), so a
  client still sending a refused body reads its 413 instead of a reset.
- A callback for a connection closed earlier in the same batch of events
  does nothing: it once crashed the worker (`not in deque`) and counted the
  connection's close twice.

gunicorn internals this relies on (checked at start by gunicorn_compat): TConn
and ThreadWorker (accept, on_client_socket_readable, enqueue_req,
finish_request, murder_pending, nr_conns, worker_connections (read by the
run loop to decide whether to accept), max_keepalived, poller,
keepalived_conns (oldest first, each with its keep-alive `timeout`),
set_accept_enabled (called with False once run() leaves its loop on
stopping), and handle() trusting conn.data_ready and a ready
conn.parser, returning True for a kept-alive connection),
STOP_KEEPALIVE_LINGER, negotiation.prior_knowledge_allowed, util.close.
"""

import contextlib
import errno
import logging
import re
import select
import selectors
import socket
import threading
import time
from collections import deque
from functools import partial

import gunicorn.http
from gunicorn import util
from gunicorn.http2 import negotiation
from gunicorn.workers import gthread

from .. import board, limits, open_files
from ..errors import BodyWaitedTooLong, ClientError, HeadTimeout, write_problem
from ..hooks import require_platform_hooks
from . import reading
from .answers import AnswersClientErrors, refuse_for_now
from .balance import AcceptShare
from .listeners import let_go_of_listeners
from .per_process import install_request_handling

log = logging.getLogger(__name__)

# Bytes read at once while a request head is buffered.
HEAD_READ_SIZE = 65536
# A request head ends with an empty line.
END_OF_HEAD = b"\r\n\r\n"
# The body's size as a request head declares it: a Content-Length, and whether the client awaits `100 Continue`.
CONTENT_LENGTH = re.compile(rb"\r\ncontent-length[ \t]*:[ \t]*(\d+)", re.I)
EXPECTS_CONTINUE = re.compile(rb"\r\nexpect[ \t]*:[ \t]*100-continue", re.I)
# After saying accept() ran out of descriptors, a worker says it again only after this long.
ACCEPT_FAILURE_QUIET_SECONDS = 60
# Connections closing lingeringly at once, at most: each holds a descriptor outside the
# worker's capacity, within the room limits.RESERVED_FILES keeps.
LINGERING_CLOSES = limits.RESERVED_FILES // 2
# accept() failures that mean "out of descriptors or memory for now", not a broken listener.
OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)

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


def body_cost(head: bytes) -> int:
    """The bytes of body admission a buffered request needs before a thread may wait for its body.

    0 when there is nothing to wait for: no declared length, or all of it
    buffered already. A large body costs limits.LARGE_BODY_BYTES, whatever
    its size, so a few are read at once; a body the client sends only once
    told to continue costs its size even when small, since it is surely not
    here. A chunked body is counted as it arrives (reading.admit_large_body).
    """
    end = head.find(END_OF_HEAD)
    if end < 0:
        return 0
    declared = max((int(match.group(1)) for match in CONTENT_LENGTH.finditer(head, 0, end + 2)), default=0)
    if declared == 0:
        return 0
    if len(head) - (end + len(END_OF_HEAD)) >= declared and not EXPECTS_CONTINUE.search(head, 0, end + 2):
        return 0
    return min(declared, limits.LARGE_BODY_BYTES)


class BodyAdmission:
    """The bodies a worker's threads may wait for at once: at most `capacity` bytes, on at most `threads` threads."""

    def __init__(self, capacity: int, threads: int):
        self.capacity = capacity
        self.threads = max(1, threads)
        self.reserved = 0
        self.waiting = 0
        self.changed = threading.Condition()

    def try_reserve(self, cost: int) -> bool:
        with self.changed:
            return self._take(cost)

    def reserve(self, cost: int, timeout: float) -> bool:
        """Wait up to `timeout` seconds for `cost` bytes (in a pool thread)."""
        with self.changed:
            return self.changed.wait_for(lambda: self._take(cost), timeout)

    def _take(self, cost: int) -> bool:
        # One body is always admitted however large, when nothing else is waited for.
        if self.waiting >= self.threads or (self.waiting and self.reserved + cost > self.capacity):
            return False
        self.reserved += cost
        self.waiting += 1
        return True

    def release(self, cost: int) -> None:
        with self.changed:
            self.reserved -= cost
            self.waiting -= 1
            self.changed.notify_all()


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
        # Bytes of body admission this connection holds (finish_request gives them back).
        self.cost = 0
        self.closed = False
        # TLS and HTTP/2 prior knowledge read their first bytes themselves: gunicorn's own path.
        self.buffers_head = not cfg.is_ssl and not negotiation.prior_knowledge_allowed(cfg, client)

    def close(self, graceful=False):
        if graceful:
            self.worker.linger(self)
        else:
            self.closed = True
            super().close()


class GthreadWorker(AnswersClientErrors, gthread.ThreadWorker):
    """gthread, where connections wait for their request head in the event loop, not in a thread."""

    lingers_in_handler = False

    def __init__(self, *args, **kwargs):
        self.capacity = 0
        self.accept_paused_until = 0.0
        self.accept_failures = 0
        self.accept_share: AcceptShare | None = None
        self.accept_failure_said_at = -ACCEPT_FAILURE_QUIET_SECONDS
        super().__init__(*args, **kwargs)
        # gunicorn answers `Connection: close` once this many connections idle: keep room for the busy ones.
        self.max_keepalived = max(1, self.capacity - self.cfg.threads)
        # Connections waiting for their head, and closing ones, oldest first.
        self.heads: dict[_Conn, None] = {}
        self.lingering: dict[_Conn, None] = {}
        # Bodies the threads may wait for at once, and connections waiting (unread, in the loop) for their turn.
        large_slots = max(1, min(limits.GTHREAD_LARGE_BODIES, self.cfg.threads - 1))
        self.admission = BodyAdmission(large_slots * limits.LARGE_BODY_BYTES, self.cfg.threads // 2)
        self.body_waiting: deque[_Conn] = deque()
        # The admission a chunked body took in this pool thread, given back once its request is done.
        self.chunked_cost = threading.local()
        # One item per connection waiting for a pool thread, and per thread serving one
        # (counted in deques: their appends and pops are thread-safe).
        self.queued: deque[None] = deque()
        self.running: deque[None] = deque()

    @classmethod
    def check_config(cls, cfg, log):
        """gunicorn's own check, if the class has one; then refuse a start without the platform's hooks."""
        parent = getattr(super(), "check_config", None)
        if parent is not None:
            parent(cfg, log)
        require_platform_hooks(cfg)

    @property
    def worker_connections(self) -> int:
        """What gunicorn's loop compares nr_conns with to accept: 0 while paused, or over this worker's share."""
        if self.accept_paused_until and time.monotonic() < self.accept_paused_until:
            if self.accept_share is not None:
                self.accept_share.withdraw()
            return 0
        if self.accept_share is not None and self.accept_share.over_share(self.nr_conns):
            return 0
        return self.capacity

    @worker_connections.setter
    def worker_connections(self, configured: int) -> None:
        self.capacity = open_files.connection_capacity(configured)

    def init_process(self):
        install_request_handling(stalled_writers=max(1, int(self.cfg.threads * limits.STALLED_THREADS_SHARE)))
        reading.admit_large_body = self._admit_chunked_body
        reading.keep_alive_room = lambda: self.nr_conns < self.max_keepalived
        self.accept_share = AcceptShare(board.current(), getattr(self, "slot", None))
        super().init_process()

    def accept(self, listener):
        try:
            client_sock, client_addr = listener.accept()
        except OSError as error:
            if error.errno in OUT_OF_RESOURCES:
                self._pause_accepting(error)
            elif error.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK, errno.EINTR):
                raise
            return
        self.accept_failures = 0
        self.nr_conns += 1
        conn = _Conn(self.cfg, client_sock, client_addr, listener.getsockname(), self)
        if not conn.buffers_head:
            client_sock.setblocking(True)
            self.enqueue_req(conn)
            return
        self._await_head(conn, time.monotonic() + limits.HEADER_TIMEOUT)

    def set_accept_enabled(self, enabled):
        """gunicorn's; once stopping, also leave the accept share and let go of the listeners (listeners.py)."""
        super().set_accept_enabled(enabled)
        if enabled or self.alive:
            return
        if self.accept_share is not None:
            self.accept_share.withdraw()
        let_go_of_listeners(self.sockets)  # unregistered from the poller above: it never sees them again

    def _pause_accepting(self, error: OSError) -> None:
        """Stop accepting for a moment: the listener stays readable, so retrying at once would spin."""
        self.accept_paused_until = time.monotonic() + limits.ACCEPT_PAUSE_SECONDS
        self.set_accept_enabled(False)
        self.accept_failures += 1
        now = time.monotonic()
        if self.accept_failures == 1 and now - self.accept_failure_said_at > ACCEPT_FAILURE_QUIET_SECONDS:
            self.accept_failure_said_at = now
            log.warning(
                "accept() failed (%s): this worker holds %s connections; pausing accepts for %ss",
                error.strerror,
                self.nr_conns,
                limits.ACCEPT_PAUSE_SECONDS,
                extra={"errno": error.errno, "connections": self.nr_conns},
            )

    def on_client_socket_readable(self, conn, client):
        """A kept-alive connection sends its next request: buffer its head in the loop too."""
        if getattr(conn, "closed", False):
            return  # closed earlier in this batch of events
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
        if conn not in self.heads:
            return  # closed earlier in this batch of events
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
        conn.cost = body_cost(head)
        if conn.cost and (self.body_waiting or not self.admission.try_reserve(conn.cost)):
            conn.deadline = time.monotonic() + limits.LARGE_BODY_WAIT
            self.body_waiting.append(conn)
            return
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
            self._release_chunked_body()
            while result is True:
                waited = self._next_request(conn)
                if waited is not _SERVE_HERE:
                    return waited
                result = super().handle(conn)
                self._release_chunked_body()
            return result
        finally:
            self._release_chunked_body()
            self.running.pop()

    def _admit_chunked_body(self, _req) -> None:
        """A chunked body grew past limits.LARGE_BODY_BYTES: wait for a large body's admission (in its thread)."""
        if getattr(self.chunked_cost, "held", 0):
            return
        if not self.admission.reserve(limits.LARGE_BODY_BYTES, limits.LARGE_BODY_WAIT):
            raise BodyWaitedTooLong(f"Too many large bodies are being read; waited {limits.LARGE_BODY_WAIT}s")
        self.chunked_cost.held = limits.LARGE_BODY_BYTES

    def _release_chunked_body(self) -> None:
        held = getattr(self.chunked_cost, "held", 0)
        if held:
            self.chunked_cost.held = 0
            self.admission.release(held)
            self.method_queue.defer(self._admit_waiting_bodies)

    def _next_request(self, conn: _Conn):
        """Wait a moment, in this thread, for the next request of a kept-alive connection.

        A client that asks again at once is served again without its socket
        going through the event loop and the pool's queue: each hand-over
        costs system calls and GIL switches between threads. The thread only
        waits while every queued connection has a thread of its own, and only
        for a head that arrives whole with its body; anything else goes back
        to the loop, with its deadline. Returns _SERVE_HERE when the head is
        in the parser's buffer, else what finish_request expects: True (an
        idle kept-alive connection) or _HEAD_TO_LOOP (a head begun here).
        """
        if not (self.alive and conn.buffers_head) or conn.cost:
            return True  # stopping, not plain HTTP/1, or holding a body's admission
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
        if not data or not head_is_complete(conn.head) or body_cost(bytes(conn.head)):
            return _HEAD_TO_LOOP  # the end of the stream, a slow head, or a body still to come
        conn.parser.unreader.unread(data)
        conn.head = bytearray()
        return _SERVE_HERE

    def _admit_waiting_bodies(self) -> None:
        while self.body_waiting and self.admission.try_reserve(self.body_waiting[0].cost):
            self.enqueue_req(self.body_waiting.popleft())

    def finish_request(self, conn, fs):
        if conn.cost:
            self.admission.release(conn.cost)
            conn.cost = 0
            self._admit_waiting_bodies()
        if not fs.cancelled() and fs.exception() is None and fs.result() is _HEAD_TO_LOOP:
            # The loop reads the rest of the head its thread began, against the same deadline.
            conn.sock.setblocking(False)
            head = conn.head
            self._await_head(conn, conn.deadline)
            conn.head = head
            if head_is_complete(head):  # with a body still to come, which waits for its admission
                self._hand_to_thread(conn)
            return
        super().finish_request(conn, fs)

    def _drop_head(self, conn: _Conn, answer: ClientError | None = None) -> None:
        self.heads.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)
        if answer is not None:
            self.nr_conns -= 1  # a lingering close counts apart (LINGERING_CLOSES)
            self.log.warning("Invalid request from ip=%s: %s", conn.client[0] if conn.client else "", answer)
            with contextlib.suppress(OSError):
                write_problem(conn.sock, answer.status, answer.reason, str(answer))
            self.linger(conn)
        else:
            self._close(conn)

    def _close(self, conn: _Conn) -> None:
        """Close a connection the loop holds, counting it out once."""
        conn.closed = True
        util.close(conn.sock)
        self.nr_conns -= 1

    def _make_room(self, now: float) -> None:
        """At capacity, close kept-alive connections idle long enough, oldest first, never one with bytes waiting."""
        excess = self.nr_conns - self.capacity
        if excess < 0:
            return
        wanted = excess + max(1, self.capacity // 100)  # a little room, so accepting resumes for a while
        # keepalived_conns is oldest first; each idles since its timeout minus the keep-alive time.
        idle_before = now - limits.IDLE_EVICTION_SECONDS + self.cfg.keepalive
        victims = []
        for conn in self.keepalived_conns:
            if conn.timeout > idle_before or len(victims) >= wanted:
                break
            if not _bytes_waiting(conn.sock):
                victims.append(conn)
        for conn in victims:
            self.keepalived_conns.remove(conn)
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.poller.unregister(conn.sock)
            self._close(conn)
        if victims:
            log.info(
                "At capacity (%s connections): closed %s kept-alive ones idle for %ss or more",
                self.capacity,
                len(victims),
                limits.IDLE_EVICTION_SECONDS,
                extra={"capacity": self.capacity, "evicted": len(victims)},
            )

    def linger(self, conn: _Conn) -> None:
        """Close lingeringly without holding the loop: stop writing, then read and discard as it arrives.

        The connection no longer counts against the worker's capacity (new
        clients are not kept waiting for it), so at most LINGERING_CLOSES
        linger at once: past that, the oldest closes now.
        """
        if len(self.lingering) >= LINGERING_CLOSES:
            self._end_linger(next(iter(self.lingering)))
        try:
            conn.sock.shutdown(socket.SHUT_WR)
            conn.sock.setblocking(False)
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._drain, conn))
        except (OSError, ValueError, KeyError):
            conn.closed = True
            util.close(conn.sock)
            return
        conn.deadline = time.monotonic() + limits.LINGER_SECONDS
        conn.lingered = 0
        self.lingering[conn] = None

    def _drain(self, conn: _Conn, _sock) -> None:
        if conn not in self.lingering:
            return  # closed earlier in this batch of events
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
        conn.closed = True
        util.close(conn.sock)

    def murder_pending(self):
        """gunicorn's check for expired connections, plus heads, lingering closes and waits past their deadline."""
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
        self._admit_waiting_bodies()
        while self.body_waiting and self.body_waiting[0].deadline <= now:
            conn = self.body_waiting.popleft()
            conn.cost = 0
            self.nr_conns -= 1
            self.log.warning(
                "A body from ip=%s waited %ss for its turn: answered 429", conn.client[0], limits.LARGE_BODY_WAIT
            )
            refuse_for_now(conn.sock)
            self.linger(conn)
        if self.alive:
            self._make_room(now)


def _bytes_waiting(sock) -> bool:
    """Whether a request (or its end) is on its way on this socket: readable now."""
    poll = select.poll()
    poll.register(sock, select.POLLIN)
    return bool(poll.poll(0))
