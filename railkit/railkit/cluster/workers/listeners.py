"""A stopping worker lets go of the listening sockets at once, not when its last request is done.

Every worker holds its own descriptor of each listening socket, and the kernel
keeps a socket listening while any process holds one. After the master's drain
(master_loop.py) new connection attempts are dropped, so a client waits and
retries its SYN for as long as a busy worker keeps its descriptor: up to the
whole graceful timeout. Once every process has let go, the kernel refuses a new
connection at once (a reset), and a client or proxy tries another replica
straight away; nothing was sent, so even a POST is safe to retry.
"""

import contextlib
import os


def let_go_of_listeners(listeners) -> None:
    """Point each listener's descriptor at /dev/null: this process no longer holds the socket.

    The descriptor stays open, so a loop still polling or closing it later
    sees a file, never a closed or reused descriptor; accept() on it fails
    (ENOTSOCK), which a stopping worker treats as nothing to accept.
    """
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        for listener in listeners:
            with contextlib.suppress(OSError, AttributeError, ValueError):
                os.dup2(null, listener.fileno(), inheritable=False)
    finally:
        os.close(null)
