"""Stop taking new connections without resetting the ones already waiting.

gunicorn stops by closing its listening sockets, but connections may still
wait in the kernel's accept queue: the kernel resets them, and clients that
had already connected lose their requests. So on SIGTERM the master first
makes the listening sockets drop new connection attempts (a one-instruction
BPF filter; such clients retry, then find the port closed), lets the workers
accept everything already queued, and only then lets gunicorn stop.
"""

import ctypes
import logging
import socket
import struct
import time

log = logging.getLogger(__name__)

# <linux/filter.h>: SO_ATTACH_FILTER takes a classic BPF program.
SO_ATTACH_FILTER = 26
# One instruction, BPF_RET | BPF_K with k = 0: keep 0 bytes of every packet, i.e. drop it.
DROP_ALL = struct.pack("HBBI", 0x06, 0, 0, 0)
# How often the queue is looked at while workers empty it.
POLL_SECONDS = 0.01


def refuse_new_connections(listener) -> bool:
    """Drop new connection attempts on `listener`; False where the platform cannot."""
    program = ctypes.create_string_buffer(DROP_ALL)
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }
    fprog = struct.pack("HP", 1, ctypes.addressof(program))
    try:
        listener.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    except OSError:
        return False
    return True


def drain(listeners: list, timeout: float) -> int:
    """Refuse new connections, then wait (up to `timeout`) for workers to accept the queued ones.

    Returns how many connections were waiting when the drain began.
    """
    closing = [listener for listener in listeners if refuse_new_connections(listener)]
    queued = sum(max(0, listener.get_backlog()) for listener in closing)
    deadline = time.monotonic() + timeout
    while any(listener.get_backlog() > 0 for listener in closing) and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
    left = sum(max(0, listener.get_backlog()) for listener in closing)
    if left:
        log.warning("%s queued connections were not accepted before the graceful timeout", left)
    return queued
