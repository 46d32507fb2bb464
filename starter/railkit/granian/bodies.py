"""Request bodies under granian: read by at most half of a worker's threads at once, within the app's size.

granian hands the app a body stream that blocks until the client sends, with
no deadline, and a blocked read cannot be given up: a client that declares a
body and sends none holds the reading thread for as long as it stays
connected (sixty of them stopped a worker's /health). So no more requests
read their bodies at once than half the worker's threads (the next gets 429
at once), and at most GTHREAD_LARGE_BODIES of them may declare over
LARGE_BODY_BYTES, as in a gthread worker: the other half of the threads
always serve requests without a body, /health among them. The app's first
read takes the whole body, which it then reads from memory; a refusal
reaches it as the ClientError the web layer answers as a problem
(web/bodies.py). A body the app never reads costs nothing, unless the app
refused it for its size (413): then the worker reads and drops it once the
answer is out, up to LINGER_MAX_BYTES, on one of the same readers, so a client
still sending it reads its 413 instead of a reset (gunicorn's lingering close).
"""

import io
import threading

from ..cluster import limits
from ..cluster.errors import BodyTooLarge, BodyWaitedTooLong

# Bytes asked of granian per read of a body of unknown length (chunked).
READ_SIZE = 64 * 2**10


class BodyGate:
    """How many of a worker's threads may wait on a body at once, and how large a body may be."""

    def __init__(self, threads: int, max_bytes: int):
        self.max_bytes = max_bytes
        self.readers = threading.BoundedSemaphore(max(1, threads // 2))
        self.large = threading.BoundedSemaphore(limits.GTHREAD_LARGE_BODIES)

    def read(self, stream, length: int) -> bytes:
        """The whole body (`length` bytes, or chunked when 0), or a ClientError: too large (413), no reader (429)."""
        if length > self.max_bytes:
            raise BodyTooLarge(f"The body is {length} bytes; this service accepts at most {self.max_bytes}")
        if not self.readers.acquire(blocking=False):
            raise BodyWaitedTooLong("Too many request bodies are arriving at once; retry shortly")
        try:
            if length <= limits.LARGE_BODY_BYTES:
                return self._read(stream, length)
            if not self.large.acquire(timeout=limits.LARGE_BODY_WAIT):
                raise BodyWaitedTooLong("Too many large bodies are being read right now; retry shortly")
            try:
                return self._read(stream, length)
            finally:
                self.large.release()
        finally:
            self.readers.release()

    def _read(self, stream, length: int) -> bytes:
        if length:
            return stream.read(length)
        parts, size = [], 0
        while size <= self.max_bytes:
            part = stream.read(READ_SIZE)
            if not part:
                break
            parts.append(part)
            size += len(part)
        if size > self.max_bytes:
            raise BodyTooLarge(f"The body is over {self.max_bytes} bytes, the most this service accepts")
        return b"".join(parts)

    def drop(self, stream, length: int) -> None:
        """Read and forget a refused body of `length` bytes, on a free reader (none free: it is left unread)."""
        if not self.readers.acquire(blocking=False):
            return
        try:
            left = length
            while left > 0:
                part = stream.read(min(READ_SIZE, left))
                if not part:
                    return
                left -= len(part)
        finally:
            self.readers.release()


class GatedInput:
    """The request's wsgi.input: the first read takes the whole body through the gate, the rest come from memory."""

    def __init__(self, stream, gate: BodyGate, length: int, expects_continue: bool = False):
        self.stream = stream
        self.gate = gate
        self.length = length
        self.expects_continue = expects_continue
        self.body: io.BytesIO | None = None

    def _body(self) -> io.BytesIO:
        if self.body is None:
            self.body = io.BytesIO(self.gate.read(self.stream, self.length))
        return self.body

    def read(self, size: int | None = -1) -> bytes:
        return self._body().read(size)

    def readline(self, size: int | None = -1) -> bytes:
        return self._body().readline(size)

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        return self._body().readlines(hint)

    def __iter__(self):
        return iter(self._body())

    def drop_if_refused(self, status: int) -> None:
        """Once a 413 is out: read and forget the body the app refused unread (its client may still be sending it)."""
        declared = 0 < self.length <= limits.LINGER_MAX_BYTES
        if status == 413 and self.body is None and declared and not self.expects_continue:
            self.gate.drop(self.stream, self.length)


def gate_input(environ: dict, gate: BodyGate) -> GatedInput | None:
    """Put the gate in front of the request's body, if it declares one; the gated body, or None."""
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    try:
        length = max(0, int(environ.get("CONTENT_LENGTH") or 0))
    except ValueError:
        length = 0
    if not length and not chunked:
        return None
    expects_continue = "100-continue" in environ.get("HTTP_EXPECT", "").lower()
    gated = GatedInput(environ["wsgi.input"], gate, 0 if chunked else length, expects_continue)
    environ["wsgi.input"] = gated
    return gated
