"""Reading a request against deadlines a slow or silent client cannot stretch, and one answer per request.

gunicorn reads a request with blocking reads and no overall deadline. Here the
request line and headers must arrive within limits.HEADER_TIMEOUT, in total,
and the body within limits.BODY_TIMEOUT; past either, the client gets a 408
problem. A chunked body that declares more than the body limit is refused at
once (413) instead of being waited for, and one that grows past
limits.LARGE_BODY_BYTES waits for its worker's admission as it does (D4: a
chunked body is counted by its bytes, not presumed large).

A body the app did not read is never waited for after its answer: gunicorn
would drain it (holding a thread for as long as the client takes) and then
answer a second time when the drain fails. Here the answer says `Connection:
close` instead, unless what is left is small and already here
(limits.DISCARD_BODY_BYTES). `100 Continue` is sent when the app first reads
the body, never for a body refused without being read.

The header lines of a request may hold limits.LIMIT_REQUEST_HEADER_BYTES in
all, as Railway's edge allows (431 past it): gunicorn bounds only their count
and each one's size.
A `close` token anywhere in Connection closes the connection after the
answer (`keep-alive, close` too), and a transfer coding other than chunked is
refused (501), not passed to the app still encoded.

gunicorn internals this relies on (checked at start by gunicorn_compat):
gunicorn.http.get_parser (replaced in each worker process); RequestParser
(unreader, mesg_class), Request (__init__, set_body_reader, unreader,
body.reader), Parser.finish_body (mesg), Body.failed, SocketUnreader (chunk,
sock, buf), ChunkedReader (parse_chunk_size, parser), LengthReader.length,
EOFReader.finished, Message.should_close (must_close),
Request._expected_100_continue, which wsgi.create reads to send `100 Continue`,
Unreader.read and unread, and Request.parse, called by Message.__init__ after
it sets max_buffer_headers, which the parser compares an unfinished head with.
"""

import select
import time
from collections.abc import Callable

import gunicorn.http
from gunicorn.http.body import ChunkedReader, EOFReader, LengthReader
from gunicorn.http.errors import LimitRequestHeaders
from gunicorn.http.message import Request
from gunicorn.http.parser import RequestParser
from gunicorn.http.unreader import SocketUnreader

from ...settings import load_settings_or_exit
from .. import limits
from ..errors import BodyTimeout, BodyTooLarge, ClientError, HeadTimeout

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

_original_get_parser = gunicorn.http.get_parser


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
        # The client waits for `100 Continue` before it sends the body: sent on the app's first read.
        self.continue_pending = False
        # Bytes read and not given back: what a request's parse consumed (DeadlineRequest.parse).
        self.taken = 0

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

    def buffered(self) -> int:
        return self.buf.getbuffer().nbytes

    def read(self, size=None, read_ahead=None):
        data = super().read(size, read_ahead)
        self.taken += len(data)
        return data

    def unread(self, data):
        self.taken -= len(data)
        super().unread(data)

    def take_available(self, wanted: int) -> bool:
        """Whether `wanted` bytes are buffered once what the socket already holds is read, never waiting."""
        poll = select.poll()
        poll.register(self.sock, select.POLLIN)
        while self.buffered() < wanted and poll.poll(0):
            data = self.sock.recv(wanted - self.buffered())
            if not data:
                return False
            self.buf.seek(0, 2)
            self.buf.write(data)
        return self.buffered() >= wanted

    def chunk(self, size_hint=None):
        if self.continue_pending and self.in_body:
            self.continue_pending = False
            self.sock.sendall(CONTINUE)
            self.deadline = time.monotonic() + limits.BODY_TIMEOUT  # the body's clock starts now
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


# Whether the worker has room to keep this connection open after its answer (set by the worker;
# None: always). gunicorn's own check counts only connections idling in its loop, and lags.
keep_alive_room: Callable[[], bool] | None = None

# What a worker does when a chunked body grows past limits.LARGE_BODY_BYTES: waits for its
# admission, or raises BodyWaitedTooLong (set by the worker; None admits every body).
admit_large_body: Callable[[object], None] | None = None


class BoundedChunkedReader(ChunkedReader):
    """gunicorn's chunked reader, refusing at once a chunk that would take the body past its limit.

    Its chunks are counted as they are announced: past limits.LARGE_BODY_BYTES the
    body waits for its worker's admission, like a large declared Content-Length.
    """

    def __init__(self, req, unreader, max_bytes: int):
        super().__init__(req, unreader)
        self.max_bytes = max_bytes
        self.declared = 0

    def parse_chunk_size(self, unreader, data=None):
        size, rest = super().parse_chunk_size(unreader, data)
        was_small = self.declared <= limits.LARGE_BODY_BYTES
        self.declared += size
        if self.declared > self.max_bytes:
            raise BodyTooLarge(f"The chunked body is over the {self.max_bytes}-byte limit")
        if was_small and self.declared > limits.LARGE_BODY_BYTES and admit_large_body is not None:
            admit_large_body(self.req)
        return size, rest


class DeadlineRequest(Request):
    """gunicorn's request, read against the deadlines and the body limit."""

    # Whether its connection closes after the answer, beyond gunicorn's own rules: decided once (should_close).
    decided_to_close: bool | None = None

    # Set once per worker from the plan (see install_deadline_parser).
    max_body_bytes = 0

    def __init__(self, cfg, unreader, peer_addr, req_number=1):
        if isinstance(unreader, DeadlineUnreader):
            # A new connection has HEADER_TIMEOUT for its first request; a
            # kept-alive one may idle for its keep-alive time first.
            idle = limits.HEADER_TIMEOUT if req_number == 1 else cfg.keepalive or limits.HEADER_TIMEOUT
            unreader.await_request(idle, kept_alive=req_number > 1)
        super().__init__(cfg, unreader, peer_addr, req_number)
        if self._expected_100_continue and isinstance(unreader, DeadlineUnreader):
            # wsgi.create would send it before the app runs, even for a body the app refuses unread.
            self._expected_100_continue = False
            unreader.continue_pending = True

    @property
    def max_buffer_headers(self) -> int:
        """How much of an unfinished head gunicorn buffers before answering 431: the header budget, not ~800 KB."""
        return limits.LIMIT_REQUEST_HEADER_BYTES

    @max_buffer_headers.setter
    def max_buffer_headers(self, _gunicorns: int) -> None:
        pass  # Message.__init__ sets its own from the per-field limits

    def parse(self, unreader):
        """gunicorn's parse; then 431 when the header lines in all (the dropped ones too) are over the budget."""
        if not isinstance(unreader, DeadlineUnreader):
            return super().parse(unreader)
        unreader.taken = 0
        try:
            rest = super().parse(unreader)
        except LimitRequestHeaders as error:
            # An unfinished head past max_buffer_headers: gunicorn says "max buffer headers".
            raise (_headers_over_budget() if "buffer" in str(error) else error) from None
        request_line = len(self.method) + len(self.uri) + len(" HTTP/1.1\r\n") + 1
        if unreader.taken - len(rest) - request_line > limits.LIMIT_REQUEST_HEADER_BYTES:
            raise _headers_over_budget()
        return rest

    def should_close(self):
        """gunicorn's rule; a `close` token anywhere in Connection; the worker short of room, or a body left unread.

        Decided once, when the answer's headers are written: asked again before
        the next request is read, it must give the same answer (room that ran
        short meanwhile would drop a request already sent).
        """
        if super().should_close():
            return True
        if self.decided_to_close is None:
            # gunicorn reads a Connection header only when it is exactly `close` or `keep-alive`.
            if "close" in _tokens(self, "CONNECTION"):
                self.decided_to_close = True
                return True
            room = keep_alive_room is None or keep_alive_room()
            self.decided_to_close = not room or (body_left(self) and not self._discard_unread_body())
        return self.decided_to_close

    def _discard_unread_body(self) -> bool:
        """Discard what is left of the body when it is small and already here; whether that was done."""
        reader = getattr(self.body, "reader", None)
        if not isinstance(reader, LengthReader) or not isinstance(self.unreader, DeadlineUnreader):
            return False
        if reader.length > limits.DISCARD_BODY_BYTES or self.unreader.continue_pending:
            return False
        try:
            if not self.unreader.take_available(reader.length):
                return False
            while self.body.read(65536):
                pass
        except (OSError, ClientError):
            return False
        return True

    def set_body_reader(self):
        # gunicorn would undo the chunks of `gzip, chunked` and hand the app the gzip bytes as the body.
        unsupported = [coding for coding in _tokens(self, "TRANSFER-ENCODING") if coding != "chunked"]
        if unsupported:
            raise UnsupportedTransferCoding(f"Transfer-Encoding {', '.join(unsupported)} is not supported: use chunked")
        super().set_body_reader()
        if isinstance(self.unreader, DeadlineUnreader):
            self.unreader.await_body()
        if isinstance(self.body.reader, ChunkedReader) and self.max_body_bytes:
            self.body.reader = BoundedChunkedReader(self, self.unreader, self.max_body_bytes)


class UnsupportedTransferCoding(ClientError):
    """A transfer coding other than chunked (RFC 9112 section 6.1: 501, as nginx answers)."""

    status, reason = 501, "Not Implemented"


def _tokens(req, name: str) -> list[str]:
    """The comma-separated tokens of every `name` header of a request, lower-cased."""
    return [token.strip(" \t").lower() for header, value in req.headers if header == name for token in value.split(",")]


def _headers_over_budget() -> LimitRequestHeaders:
    return LimitRequestHeaders(f"the headers are over {limits.LIMIT_REQUEST_HEADER_BYTES} bytes in all")


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
        try:
            return super().finish_body(deadline, max_bytes)
        except ClientError:
            # The answer is sent already: a second one (a 408, a 413) would answer nothing asked.
            return False


def deadline_get_parser(cfg, source, source_addr, http2_connection=False):
    """gunicorn.http.get_parser, with HTTP/1 requests read by DeadlineParser."""
    if http2_connection or getattr(cfg, "protocol", "http") != "http":
        return _original_get_parser(cfg, source, source_addr, http2_connection)
    return DeadlineParser(cfg, source, source_addr)


def install_deadline_parser(cooperative: bool = False) -> None:
    """Make this worker process read every HTTP/1 request with DeadlineParser."""
    DeadlineRequest.max_body_bytes = load_settings_or_exit().plan.max_body_mb * 2**20
    DeadlineUnreader.yields_in_body = cooperative
    gunicorn.http.get_parser = deadline_get_parser


def has_large_body(req) -> bool:
    """Whether a parsed request declares a body over limits.LARGE_BODY_BYTES (a chunked one is counted as it comes)."""
    reader = getattr(getattr(req, "body", None), "reader", None)
    return isinstance(reader, LengthReader) and reader.length > limits.LARGE_BODY_BYTES


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
