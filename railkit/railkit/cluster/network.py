"""Where the server listens."""

import errno
import logging
import os
import socket
import sys

from ..settings import EXIT_BAD_CONFIG

log = logging.getLogger(__name__)


def listen_addresses(port: int) -> list[str]:
    """Every address on `port`: IPv6 and IPv4 where the host has IPv6, else IPv4.

    Railway's private network is IPv6-only in older environments, and its
    public edge connects over IPv4; a dual-stack [::] socket accepts both.
    gunicorn leaves a socket's IPV6_V6ONLY as the host sets it, so where the
    host makes [::] IPv6-only (net.ipv6.bindv6only=1) IPv4 gets its own socket.
    """
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::", 0))
            ipv6_only = probe.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
    except OSError:
        return [f"0.0.0.0:{port}"]
    if ipv6_only:
        return [f"[::]:{port}", f"0.0.0.0:{port}"]
    return [f"[::]:{port}"]


def address_in_use(addresses: list) -> str | None:
    """The first (host, port) another process already listens on, as text, or None.

    gunicorn would retry such an address five times, a second apart, then exit 1
    with five lines of "Connection in use"; a probe first gives one clear refusal.
    """
    for address in addresses:
        if not isinstance(address, tuple):
            continue  # a unix socket path: gunicorn replaces a stale one itself
        host, port = address[:2]
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    return f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
    return None


def refuse_if_taken(addresses: list, port: int) -> None:
    """Stop the start with one JSON line when another process already listens on PORT."""
    if os.environ.get("GUNICORN_FD") or os.environ.get("LISTEN_FDS"):
        return  # the sockets are inherited, already bound
    taken = address_in_use(addresses)
    if taken:
        log.error(
            "Refusing to start: PORT=%s is taken, another process listens on %s",
            port,
            taken,
            extra={"variable": "PORT", "value": str(port), "address": taken},
        )
        sys.exit(EXIT_BAD_CONFIG)
