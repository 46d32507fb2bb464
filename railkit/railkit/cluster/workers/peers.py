"""Whether a request's peer is a trusted proxy: an IPv4 peer as itself, worked out once per address.

gunicorn checks the peer against an allow list for every request:
forwarded_allow_ips (forwarded headers, cleartext HTTP/2) and proxy_allow_ips
(the PROXY protocol). Two things go wrong on the dual-stack [::] socket this
project listens on:

- Every IPv4 peer arrives as an IPv4-mapped IPv6 address (::ffff:10.0.0.5),
  which gunicorn compares with IPv6 entries only: a proxy listed as 10.0.0.5,
  or 127.0.0.1, is not trusted, and its X-Forwarded-Proto is ignored. Here a
  mapped peer is trusted when it is listed as written or as its IPv4 address
  (security.py's rule for the app's own check).
- Parsing that address is the dearest part of the check (~7 us, on a route
  that takes a few hundred), and gunicorn does it for every request. The
  answer depends only on the address and the worker's fixed allow list, so
  each worker remembers it, for a bounded number of peers.

gunicorn internals this relies on (checked at start by gunicorn_compat):
message._ip_in_allow_list, and negotiation's own import of it.
"""

import ipaddress

from gunicorn.http import message
from gunicorn.http2 import negotiation

# Distinct (peer, allow list) answers remembered; the edge and local proxies are a handful.
# A client cycling through more addresses only empties the cache: it costs what gunicorn's check did.
PEER_CACHE_SIZE = 1024

_original_ip_in_allow_list = message._ip_in_allow_list
_answers: dict[tuple[str, tuple[str, ...]], bool] = {}


def peer_in_allow_list(ip_str, allow_list, networks) -> bool:
    """gunicorn's _ip_in_allow_list, with an IPv4-mapped peer checked as its IPv4 address too."""
    if _original_ip_in_allow_list(ip_str, allow_list, networks):
        return True
    mapped = ipv4_mapped(ip_str)
    return mapped is not None and _original_ip_in_allow_list(mapped, allow_list, networks)


def ipv4_mapped(ip_str: str) -> str | None:
    """The IPv4 address an IPv4-mapped IPv6 address stands for, or None."""
    try:
        mapped = getattr(ipaddress.ip_address(ip_str), "ipv4_mapped", None)
    except ValueError:
        return None
    return str(mapped) if mapped else None


def cached_peer_in_allow_list(ip_str, allow_list, networks) -> bool:
    """peer_in_allow_list, remembered per peer address and allow list."""
    key = (ip_str, tuple(allow_list))
    trusted = _answers.get(key)
    if trusted is None:
        trusted = peer_in_allow_list(ip_str, allow_list, networks)
        if len(_answers) >= PEER_CACHE_SIZE:
            _answers.clear()
        _answers[key] = trusted
    return trusted


def install_peer_trust() -> None:
    """Make this worker process check peers with cached_peer_in_allow_list (gunicorn's two callers)."""
    message._ip_in_allow_list = cached_peer_in_allow_list
    negotiation._ip_in_allow_list = cached_peer_in_allow_list
