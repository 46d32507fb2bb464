"""Writing answers against a deadline a client that reads nothing cannot stretch.

gunicorn writes an answer with a blocking sendall and no deadline: a client
that asks for a large answer and never reads it holds the writing thread (or
greenlet, and the answer's memory) for as long as it keeps the connection
open. Here each write must make progress within limits.WRITE_STALL_SECONDS,
and a worker lets only so many writes wait on their clients at once: when one
more stalls, the one stalled longest is cut, so the rest of the worker keeps
serving (limits.py says why those figures).

A file body (Flask's send_file) is sent with sendfile() the same way.

gunicorn internals this relies on (checked at start by gunicorn_compat):
util.write and util.write_chunk (replaced in each worker process), and
Response.sendfile, which sends a file through the response's `sock` (its
sendall and sendfile).
"""

import contextlib
import errno
import logging
import os
import select
import socket
import threading
import time

from gunicorn import util
from gunicorn.http import wsgi

from .. import limits

log = logging.getLogger(__name__)

# The most one os.sendfile() call is asked to send (Linux sends at most about 2 GB at once).
SENDFILE_MAX_BYTES = 2**30
# What a gevent worker reads of a file at once, to send it.
FILE_BLOCK_BYTES = 2**16


class StalledWriters:
    """The writes waiting for their client to read, at most `capacity` at once: the longest stalled is cut first."""

    def __init__(self, capacity: int):
        self.capacity = max(1, capacity)
        self.lock = threading.Lock()
        # socket -> when its write stalled, oldest first.
        self.waiting: dict[socket.socket, float] = {}
        self.cut = 0

    def enter(self, sock) -> None:
        """Note that a write on `sock` waits; cut the longest-stalled other connection when too many do."""
        victim = None
        with self.lock:
            if len(self.waiting) >= self.capacity:
                victim = next(iter(self.waiting))
                del self.waiting[victim]
                self.cut += 1
            self.waiting[sock] = time.monotonic()
        if victim is not None:
            log.warning("A client read nothing while %s others stalled too: its connection is cut", self.capacity - 1)
            _cut(victim)

    def leave(self, sock) -> bool:
        """The write on `sock` no longer waits; False when it was cut meanwhile."""
        with self.lock:
            return self.waiting.pop(sock, None) is not None


def _cut(sock) -> None:
    """Make the write waiting on `sock` fail at once (its thread sees a broken pipe)."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class WriteStalled(BrokenPipeError):
    """The client read nothing for limits.WRITE_STALL_SECONDS: its connection is given up, like a broken pipe."""


def _wait_writable(sock, seconds: float) -> bool:
    poll = select.poll()
    poll.register(sock, select.POLLOUT)
    return bool(poll.poll(seconds * 1000))


def _send_now(sock, view) -> int:
    """Send what the socket takes without waiting (BlockingIOError when nothing)."""
    return sock.send(view, socket.MSG_DONTWAIT)


def _send_now_cooperatively(sock, view) -> int:
    # A gevent socket would wait in the hub, whatever the flags, unless its timeout is 0.
    previous = sock.gettimeout()
    sock.settimeout(0.0)
    try:
        return sock.send(view)
    finally:
        sock.settimeout(previous)


# Set per worker process by install_write_deadline.
_stalled = StalledWriters(1)
_send = _send_now
_cooperative = False


def send_all(sock, data) -> None:
    """sock.sendall(data), where each send must make progress within limits.WRITE_STALL_SECONDS.

    A non-blocking socket (the event loop's own writes) keeps sendall's
    semantics: it never waits here.
    """
    if sock.gettimeout() == 0.0:
        sock.sendall(data)
        return
    view = memoryview(data).cast("B")
    while view:
        try:
            view = view[_send(sock, view) :]
            continue
        except (BlockingIOError, InterruptedError):
            pass
        _await_progress(sock)


def send_file(sock, file, offset: int = 0, count: int | None = None) -> None:
    """sock.sendfile(file, offset, count), where each step must make progress within limits.WRITE_STALL_SECONDS."""
    fileno = file.fileno()
    if count is None:
        count = os.fstat(fileno).st_size - offset
    if _cooperative:
        # What gevent's own sendfile does (its sockets never block the thread): read, then send.
        while count > 0:
            block = os.pread(fileno, min(count, FILE_BLOCK_BYTES), offset)
            if not block:
                return
            send_all(sock, block)
            offset += len(block)
            count -= len(block)
        return
    previous = sock.gettimeout()
    sock.setblocking(False)  # os.sendfile then sends what fits, and says when nothing does
    try:
        while count > 0:
            try:
                sent = os.sendfile(sock.fileno(), fileno, offset, min(count, SENDFILE_MAX_BYTES))
            except (BlockingIOError, InterruptedError):
                _await_progress(sock)
                continue
            if not sent:
                return  # the file is shorter than announced: gunicorn's own sendfile stops there too
            offset += sent
            count -= sent
    finally:
        sock.settimeout(previous)


def _await_progress(sock) -> None:
    """Wait until `sock` takes more, as one of the stalled writers: WriteStalled past the deadline, or when cut."""
    _stalled.enter(sock)
    # Under gevent, select.poll is gevent's: the wait yields to the other greenlets.
    writable = _wait_writable(sock, limits.WRITE_STALL_SECONDS)
    if not _stalled.leave(sock):
        raise WriteStalled(errno.EPIPE, "cut: too many clients read nothing at once")
    if not writable:
        log.warning("A client read nothing for %ss: its connection is cut", limits.WRITE_STALL_SECONDS)
        raise WriteStalled(errno.EPIPE, f"the client read nothing for {limits.WRITE_STALL_SECONDS}s")


class DeadlineSocket:
    """An answer's socket as gunicorn's Response.sendfile uses it: sendall and sendfile keep the write deadline."""

    def __init__(self, sock):
        self.sock = sock

    def sendall(self, data) -> None:
        send_all(self.sock, data)

    def sendfile(self, file, offset=0, count=None) -> None:
        send_file(self.sock, file, offset, count)

    def __getattr__(self, name):
        return getattr(self.sock, name)


_original_sendfile = wsgi.Response.sendfile


def sendfile(response, respiter) -> bool:
    """gunicorn's Response.sendfile (a file body: Flask's send_file), against the write deadline."""
    sock = response.sock
    response.sock = DeadlineSocket(sock)
    try:
        return _original_sendfile(response, respiter)
    finally:
        response.sock = sock


def write(sock, data, chunked=False) -> None:
    """gunicorn's util.write, against the write deadline."""
    if chunked:
        write_chunk(sock, data)
    else:
        send_all(sock, data)


def write_chunk(sock, data) -> None:
    """gunicorn's util.write_chunk, against the write deadline."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    send_all(sock, b"%X\r\n%s\r\n" % (len(data), data))


def install_write_deadline(stalled_capacity: int, cooperative: bool = False) -> None:
    """Make this worker process write every answer against the deadline, `stalled_capacity` stalled at most."""
    global _stalled, _send, _cooperative
    _stalled = StalledWriters(stalled_capacity)
    _send = _send_now_cooperatively if cooperative else _send_now
    _cooperative = cooperative
    util.write = write
    util.write_chunk = write_chunk
    wsgi.Response.sendfile = sendfile
