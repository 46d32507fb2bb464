"""Where the server listens."""

import socket


def listen_addresses(port: int) -> list[str]:
    """Every address on `port`: IPv6 and IPv4 where the host has IPv6, else IPv4.

    Railway's private network is IPv6-only in older environments, and its
    public edge connects over IPv4; a dual-stack [::] socket accepts both.
    """
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::", 0))
    except OSError:
        return [f"0.0.0.0:{port}"]
    return [f"[::]:{port}"]
