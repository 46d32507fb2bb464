"""gunicorn's workers, with deadlines a slow or silent client cannot stretch.

gunicorn reads a request with blocking reads and no overall deadline, so a
client that sends its headers a byte every few seconds, or nothing at all,
holds a thread (gthread), a pool slot (gevent) or the whole worker (sync) for
as long as it likes. These subclasses change only how requests are read:

- The request line and headers must arrive within limits.HEADER_TIMEOUT, in
  total; the body within limits.BODY_TIMEOUT. Past either, the client gets a
  408 problem, and the worker goes on serving everyone else.
- gthread: a connection waits for its request head in the worker's event
  loop; it only takes a thread once its head has arrived. An idle or silent
  connection costs a file descriptor, never a thread.
- gthread: a thread that answered a kept-alive connection waits a few
  milliseconds for its next request and serves it too, while the pool has
  threads to spare; a head that is not whole at once goes back to the loop.
- gthread and gevent: near worker_connections, the oldest connection with no
  request in flight is closed, so idle clients cannot lock new ones out.
- A chunked body that declares more than the body limit is refused at once
  (413) instead of being waited for.
- Error answers close lingeringly (RFC 9112 section 9.6), so a client still
  sending a refused body reads its 413 instead of a reset.
- Large bodies (over limits.LARGE_BODY_BYTES) are read a few at a time per
  worker, so small requests (/health) always find a thread or a turn.
- sync serves one connection at a time: the deadlines bound how long one
  client holds it, nothing more (see the README).
- Every worker formats the Date header once a second, not once per response.

gunicorn.conf.py names GthreadWorker, GeventWorker or SyncWorker; `gunicorn -k`
on the command line still picks gunicorn's own worker.

gunicorn internals this relies on: gunicorn.http.get_parser (replaced in each
worker process); RequestParser (unreader, mesg_class), Request (__init__,
set_body_reader, unreader, body.reader), Parser.finish_body (mesg), Body.failed,
util.http_date, SocketUnreader (chunk, sock, buf),
ChunkedReader (parse_chunk_size, parser), LengthReader.length and
EOFReader.finished; gthread's TConn and ThreadWorker (accept,
on_client_socket_readable, enqueue_req, finish_request, murder_pending,
nr_conns, worker_connections, poller, keepalived_conns, and handle() trusting
conn.data_ready and a ready conn.parser, returning True for a kept-alive
connection), STOP_KEEPALIVE_LINGER; ggevent's GeventWorker (init_process,
patch, run, handle, handle_request raising StopIteration to close), and
gevent.monkey.patch_module's private _notify_*_subscribers arguments;
SyncWorker (init_process, handle_request); Worker.handle_error.
"""

import contextlib
import errno
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
from gunicorn.http.body import ChunkedReader, EOFReader, LengthReader
from gunicorn.http.message import Request
from gunicorn.http.parser import RequestParser
from gunicorn.http.unreader import SocketUnreader
from gunicorn.http2 import negotiation
from gunicorn.workers import gthread
from gunicorn.workers.sync import SyncWorker as _SyncWorker

from ..settings import load_settings_or_exit
from . import limits
from .errors import BodyTimeout, BodyTooLarge, ClientError, HeadTimeout, linger, write_problem

# Bytes read at once while a request head is buffered.
HEAD_READ_SIZE = 65536
# A request head ends with an empty line.
END_OF_HEAD = b"\r\n\r\n"
# The body's size as a request head declares it: a Content-Length, or chunked (unknown, so large).
DECLARED_BODY = re.compile(rb"\r\n(?:content-length[ \t]*:[ \t]*(\d+)|transfer-encoding[ \t]*:[^\r\n]*chunked)", re.I)
# How long a gthread thread that just answered a kept-alive connection waits for its next request (ms):
# long enough for a busy client on a loaded host, short enough that an idle one hardly holds the thread.
NEXT_REQUEST_WAIT_MS = 5

_original_get_parser = gunicorn.http.get_parser


# -- reading a request against deadlines --------------------------------------


class DeadlineUnreader(SocketUnreader):
    """gunicorn's socket reader, where each read stops at the deadline of the part being read.

    A request is read in three parts: the wait for its first byte (an idle
    keep-alive connection, which just closes when it runs out), its head
    (HEADER_TIMEOUT) and its body (BODY_TIMEOUT).
    """

    # Under gevent, a body arriving faster than it is read never makes a read
    # wait, so its greenlet would keep the worker's only thread from everyone
    # else until the whole body is in: each read of a body yields first.
    yields_in_body = False

    def __init__(self, sock, max_chunk=8192):
        super().__init__(sock, max_chunk)
        self.deadline: float | None = None
        self.idle = False
        self.in_body = False
        self.head_clock_starts_on_first_byte = False

    def await_request(self, idle_seconds: float, kept_alive: bool) -> None:
        """Start the clock for the next request's head."""
        now = time.monotonic()
        self.in_body = False
        if self.buf.getbuffer().nbytes:
            # Part of the head is here already: its clock runs now.
            self.idle, self.deadline, self.head_clock_starts_on_first_byte = False, now + limits.HEADER_TIMEOUT, False
        else:
            # A new connection's clock runs from the accept; a kept-alive one's from its first byte.
            self.idle, self.deadline, self.head_clock_starts_on_first_byte = True, now + idle_seconds, kept_alive

    def await_body(self) -> None:
        self.idle, self.in_body, self.deadline = False, True, time.monotonic() + limits.BODY_TIMEOUT

    def chunk(self, size_hint=None):
        if self.deadline is None:
            return super().chunk(size_hint)
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            return self._expired()
        previous = self.sock.gettimeout()
        self.sock.settimeout(remaining)
        try:
            data = super().chunk(size_hint)
        except TimeoutError:
            return self._expired()
        finally:
            self.sock.settimeout(previous)
        if self.in_body and self.yields_in_body:
            time.sleep(0)  # gevent's sleep: lets every other ready greenlet run
        if data and self.idle:
            self.idle = False
            if self.head_clock_starts_on_first_byte:
                self.deadline = time.monotonic() + limits.HEADER_TIMEOUT
        return data

    def _expired(self) -> bytes:
        if self.idle:
            return b""  # nothing was asked yet: the connection just ends
        if self.in_body:
            raise BodyTimeout(f"The body did not arrive within {limits.BODY_TIMEOUT}s")
        raise HeadTimeout(f"The request head did not arrive within {limits.HEADER_TIMEOUT}s")


class BoundedChunkedReader(ChunkedReader):
    """gunicorn's chunked reader, refusing at once a chunk that would take the body past its limit."""

    def __init__(self, req, unreader, max_bytes: int):
        super().__init__(req, unreader)
        self.max_bytes = max_bytes
        self.declared = 0

    def parse_chunk_size(self, unreader, data=None):
        size, rest = super().parse_chunk_size(unreader, data)
        self.declared += size
        if self.declared > self.max_bytes:
            raise BodyTooLarge(f"The chunked body is over the {self.max_bytes}-byte limit")
        return size, rest


class DeadlineRequest(Request):
    """gunicorn's request, read against the deadlines and the body limit."""

    # Set once per worker from the plan (see install_deadline_parser).
    max_body_bytes = 0

    def __init__(self, cfg, unreader, peer_addr, req_number=1):
        if isinstance(unreader, DeadlineUnreader):
            # A new connection has HEADER_TIMEOUT for its first request; a
            # kept-alive one may idle for its keep-alive time first.
            idle = limits.HEADER_TIMEOUT if req_number == 1 else cfg.keepalive or limits.HEADER_TIMEOUT
            unreader.await_request(idle, kept_alive=req_number > 1)
        super().__init__(cfg, unreader, peer_addr, req_number)

    def set_body_reader(self):
        super().set_body_reader()
        if isinstance(self.unreader, DeadlineUnreader):
            self.unreader.await_body()
        if isinstance(self.body.reader, ChunkedReader) and self.max_body_bytes:
            self.body.reader = BoundedChunkedReader(self, self.unreader, self.max_body_bytes)


class DeadlineParser(RequestParser):
    mesg_class = DeadlineRequest

    def __init__(self, cfg, source, source_addr):
        super().__init__(cfg, source, source_addr)
        if hasattr(source, "recv"):
            self.unreader = DeadlineUnreader(source)

    def finish_body(self, deadline=None, max_bytes=None):
        if self.mesg and not getattr(self.mesg.body, "failed", False) and not body_left(self.mesg):
            # Nothing left to discard (a GET, a body the app read): gunicorn would
            # still set the socket's timeout back, a system call per request.
            return True
        return super().finish_body(deadline, max_bytes)


def deadline_get_parser(cfg, source, source_addr, http2_connection=False):
    """gunicorn.http.get_parser, with HTTP/1 requests read by DeadlineParser."""
    if http2_connection or getattr(cfg, "protocol", "http") != "http":
        return _original_get_parser(cfg, source, source_addr, http2_connection)
    return DeadlineParser(cfg, source, source_addr)


def install_deadline_parser(cooperative: bool = False) -> None:
    """Make this worker process read every HTTP/1 request with DeadlineParser (and cache its Date)."""
    DeadlineRequest.max_body_bytes = load_settings_or_exit().plan.max_body_mb * 2**20
    DeadlineUnreader.yields_in_body = cooperative
    gunicorn.http.get_parser = deadline_get_parser
    install_cached_http_date()


_original_http_date = util.http_date
# (second, its Date header value): rebuilt once a second, not formatted for every response.
_current_date = (0, "")


def cached_http_date(timestamp=None) -> str:
    """gunicorn's util.http_date, formatting the current second once instead of once per response."""
    global _current_date
    if timestamp is not None:
        return _original_http_date(timestamp)
    now = int(time.time())
    second, text = _current_date
    if second != now:
        text = _original_http_date(now)
        _current_date = (now, text)  # one tuple, swapped whole: safe to read from any thread
    return text


def install_cached_http_date() -> None:
    """Make this worker process stamp responses' Date from cached_http_date."""
    util.http_date = cached_http_date


def declares_large_body(head: bytes) -> bool:
    """Whether a request head announces a body over limits.LARGE_BODY_BYTES (chunked counts as large)."""
    for match in DECLARED_BODY.finditer(head):
        if match.group(1) is None or int(match.group(1)) > limits.LARGE_BODY_BYTES:
            return True
    return False


def has_large_body(req) -> bool:
    """Whether a parsed request carries a body over limits.LARGE_BODY_BYTES (chunked counts as large)."""
    reader = getattr(getattr(req, "body", None), "reader", None)
    if isinstance(reader, LengthReader):
        return reader.length > limits.LARGE_BODY_BYTES
    return isinstance(reader, ChunkedReader)


def head_is_complete(head: bytearray, searched: int = 0) -> bool:
    """Whether a buffered head is ready for the parser: whole, too long, or with a bare LF (which it refuses)."""
    if head.find(END_OF_HEAD, searched) >= 0 or len(head) >= limits.MAX_BUFFERED_HEAD:
        return True
    return head.count(b"\n") != head.count(b"\r\n")


def refuse_for_now(sock) -> None:
    """Answer 429: the worker is reading as many large bodies as it may."""
    with contextlib.suppress(OSError):
        write_problem(sock, 429, "Too Many Requests", "Too many large bodies are being read; retry shortly")


def body_left(req) -> bool:
    """Whether the client may still be sending the body of `req`."""
    reader = getattr(getattr(req, "body", None), "reader", None)
    if isinstance(reader, LengthReader):
        return reader.length > 0
    if isinstance(reader, ChunkedReader):
        return reader.parser is not None
    if isinstance(reader, EOFReader):
        return not reader.finished
    return False


class _AnswersClientErrors:
    """Answers the errors above as problems, like gunicorn's own 4xx, and counts them as invalid requests."""

    # Whether this worker closes lingeringly right here (gevent, sync) or in its event loop (gthread).
    lingers_in_handler = True

    def handle_error(self, req, client, addr, exc):
        if not isinstance(exc, ClientError):
            super().handle_error(req, client, addr, exc)
            if self.lingers_in_handler and body_left(req):
                linger(client)
            return
        ip = addr[0] if isinstance(addr, tuple) else ""
        self.log.warning("Invalid request from ip=%s: %s", ip, exc)
        try:
            write_problem(client, exc.status, exc.reason, str(exc))
        except OSError:
            return
        if self.lingers_in_handler:
            linger(client)


# -- gthread -------------------------------------------------------------------

# What a pool thread returns when the next request's head it began reading is the event loop's to finish.
_HEAD_TO_LOOP = object()
# A kept-alive connection's next request is in its parser's buffer: the thread serves it too.
_SERVE_HERE = object()


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


class GthreadWorker(_AnswersClientErrors, gthread.ThreadWorker):
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
        install_deadline_parser()
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
        try:
            data = conn.sock.recv(HEAD_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
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
        poll = select.poll()
        poll.register(conn.sock, select.POLLIN)
        if not poll.poll(NEXT_REQUEST_WAIT_MS):
            return True
        try:
            data = conn.sock.recv(HEAD_READ_SIZE, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            data = b""
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
        try:
            data = conn.sock.recv(HEAD_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
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


# -- gevent --------------------------------------------------------------------


def _gevent_worker_class():
    """Defined on first use (in the master): importing gevent is only for gevent projects."""
    import os
    import signal

    import gevent
    import gevent.os
    import gevent.signal  # imported once here, not by each worker when it patches signal (~0.6 MB each)
    import gevent.socket
    from gevent import monkey
    from gunicorn.workers.ggevent import GeventWorker as _GeventWorker

    class GeventWorker(_AnswersClientErrors, _GeventWorker):
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
            install_deadline_parser(cooperative=True)
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

    return GeventWorker


def __getattr__(name):
    if name == "GeventWorker":
        worker = _gevent_worker_class()
        globals()[name] = worker
        return worker
    raise AttributeError(name)


# -- sync ----------------------------------------------------------------------


class SyncWorker(_AnswersClientErrors, _SyncWorker):
    """sync, with request deadlines: one slow client holds the worker for a bounded time only."""

    def init_process(self):
        install_deadline_parser()
        super().init_process()

    def handle_request(self, listener, req, client, addr):
        super().handle_request(listener, req, client, addr)
        if body_left(req):
            linger(client)
