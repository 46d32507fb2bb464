"""Stop taking new connections without resetting the ones already waiting.

gunicorn stops by closing its listening sockets, but connections may still
wait in the kernel's accept queue: the kernel resets them, and clients that
had already connected lose their requests. So on SIGTERM the master first
makes the listening sockets drop new connection attempts (a one-instruction
BPF filter; such clients retry, then find the port closed), lets the workers
accept everything already queued, and only then lets gunicorn stop.
master_loop.py runs these steps as deadlines of the master's loop.
"""

import ctypes
import socket
import struct

# <linux/filter.h>: SO_ATTACH_FILTER takes a classic BPF program.
SO_ATTACH_FILTER = 26
# One instruction, BPF_RET | BPF_K with k = 0: keep 0 bytes of every packet, i.e. drop it.
DROP_ALL = struct.pack("HBBI", 0x06, 0, 0, 0)


def refuse_new_connection_attempts(listener) -> bool:
    """Drop new connection attempts on `listener`; False where the platform cannot."""
    program = ctypes.create_string_buffer(DROP_ALL)
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }
    fprog = struct.pack("HP", 1, ctypes.addressof(program))
    try:
        listener.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    except OSError:
        return False
    return True


def refuse_new_connections(listeners: list) -> list:
    """Drop new connection attempts on every listener that allows it; returns those."""
    return [listener for listener in listeners if refuse_new_connection_attempts(listener)]


def backlog(listeners: list) -> int:
    """Connections waiting in the listeners' accept queues."""
    return sum(max(0, listener.get_backlog()) for listener in listeners)
