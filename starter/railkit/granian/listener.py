"""The one listening socket every granian worker accepts from, made by the master.

granian binds a socket per worker on Linux (SO_REUSEPORT): the kernel shares
connections out between them, and the connections queued on a worker's socket
are reset when that worker stops, at every respawn and at shutdown, unless
the host enables net.ipv4.tcp_migrate_req (a Railway container cannot). One
socket shared by every worker, as gunicorn's, keeps its queue whichever
worker stops, and lets the master drain it (cluster/drain.py).
"""

import errno
import logging
import socket
import struct
import sys

from ..settings import EXIT_BAD_CONFIG

log = logging.getLogger(__name__)

# <linux/tcp.h> struct tcp_info: 8 bytes, then 32-bit fields; tcpi_unacked (the 13th) is a listener's queue.
TCP_INFO = struct.Struct("8B24I")
UNACKED_FIELD = 8 + 4


class Listener:
    """The shared socket, with what the drain asks of a listener."""

    def __init__(self, sock: socket.socket):
        self.sock = sock

    def setsockopt(self, *args) -> None:
        self.sock.setsockopt(*args)

    def get_backlog(self) -> int:
        """Connections waiting in the accept queue (0 where the kernel cannot tell)."""
        try:
            return TCP_INFO.unpack(self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO.size))[
                UNACKED_FIELD
            ]
        except (AttributeError, OSError, struct.error):
            return 0

    @property
    def addresses(self) -> list[str]:
        host, port = self.sock.getsockname()[:2]
        return [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]

    def close(self) -> None:
        self.sock.close()


def _new_socket(family: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it: small answers leave at once, as granian's own socket does.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if family == socket.AF_INET6:
        # Dual-stack: IPv4 clients too, whatever net.ipv6.bindv6only says.
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    return sock


def _bound(port: int) -> tuple[socket.socket, str]:
    """A socket bound to PORT on every interface: [::] for IPv6 and IPv4, else 0.0.0.0 where the host has no IPv6."""
    try:
        sock = _new_socket(socket.AF_INET6)
    except OSError:
        sock = None
    if sock is not None:
        try:
            sock.bind(("::", port))
            return sock, "::"
        except OSError as error:
            sock.close()
            if error.errno != errno.EADDRNOTAVAIL:  # IPv6 switched off on this host: IPv4 alone
                raise
    sock = _new_socket(socket.AF_INET)
    try:
        sock.bind(("0.0.0.0", port))
    except OSError:
        sock.close()
        raise
    return sock, "0.0.0.0"


def open_listener(port: int, backlog: int) -> Listener:
    """Listen on PORT on every interface; stop the start with one JSON line if another process holds it."""
    try:
        sock, _ = _bound(port)
    except OSError as error:
        if error.errno != errno.EADDRINUSE:
            raise
        address = f"[::]:{port}" if socket.has_ipv6 else f"0.0.0.0:{port}"
        log.error(
            "Refusing to start: PORT=%s is taken, another process listens on %s",
            port,
            address,
            extra={"variable": "PORT", "value": str(port), "address": address},
        )
        sys.exit(EXIT_BAD_CONFIG)
    sock.listen(backlog)
    sock.set_inheritable(True)
    return Listener(sock)
