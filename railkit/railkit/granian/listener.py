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


def _new_socket() -> tuple[socket.socket, str]:
    """A dual-stack [::] socket (IPv4 clients too, whatever net.ipv6.bindv6only says), else IPv4."""
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    except OSError:
        return socket.socket(socket.AF_INET, socket.SOCK_STREAM), "0.0.0.0"
    try:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    except OSError:
        sock.close()
        return socket.socket(socket.AF_INET, socket.SOCK_STREAM), "0.0.0.0"
    return sock, "::"


def open_listener(port: int, backlog: int) -> Listener:
    """Listen on PORT on every interface; stop the start with one JSON line if another process holds it."""
    sock, host = _new_socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it: small answers leave at once, as granian's own socket does.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRNOTAVAIL and host == "::":
            # IPv6 is switched off on this host: IPv4 alone.
            sock, host = socket.socket(socket.AF_INET, socket.SOCK_STREAM), "0.0.0.0"
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind((host, port))
        elif error.errno == errno.EADDRINUSE:
            address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            log.error(
                "Refusing to start: PORT=%s is taken, another process listens on %s",
                port,
                address,
                extra={"variable": "PORT", "value": str(port), "address": address},
            )
            sys.exit(EXIT_BAD_CONFIG)
        else:
            raise
    sock.listen(backlog)
    sock.set_inheritable(True)
    return Listener(sock)
