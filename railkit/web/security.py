"""What every response carries, and which client the app believes it is talking to.

The client's address is the TCP peer's, unless the peer is a trusted proxy
(FORWARDED_ALLOW_IPS, with gunicorn's meaning and default; on Railway, the
edge). Then it is the nearest X-Forwarded-For entry that is not itself a
trusted proxy; with "*" (any peer), exactly one hop: the entry the proxy
added. An entry that is not an IP address ends the walk, so a client cannot
choose its own rate-limit key by sending the header itself.
"""

import functools
import ipaddress

from flask import Flask, Response, request
from werkzeug.middleware.proxy_fix import ProxyFix

# OWASP's headers for a JSON API.
API_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}
HSTS = "max-age=63072000; includeSubDomains"
# Keyed by the lower-case name, to compare with a response's own headers in one pass.
_API_HEADERS_BY_KEY = {name.lower(): (name, value) for name, value in API_HEADERS.items()}
# Distinct peers whose trust is remembered; the edge and local proxies are a handful.
PEER_CACHE_SIZE = 1024
# The TCP peer's address, kept in the WSGI environ when the client's replaces it.
PEER_ADDR_KEY = "railkit.peer_addr"


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def in_networks(address: ipaddress.IPv4Address | ipaddress.IPv6Address, networks) -> bool:
    """Whether `address` is in one of `networks`, as written or as the IPv4 address it maps.

    A dual-stack socket reports an IPv4 peer as ::ffff:a.b.c.d, which no IPv4 network contains.
    """
    mapped = getattr(address, "ipv4_mapped", None)
    return any(address in network or (mapped is not None and mapped in network) for network in networks)


class TrustedProxies:
    """WSGI middleware: believe X-Forwarded-For/-Proto/-Host only from trusted peers."""

    def __init__(self, app, allowed: tuple[str, ...]):
        self.app = app
        self.any_peer = allowed == ("*",)
        self.networks = () if self.any_peer else tuple(ipaddress.ip_network(entry, strict=False) for entry in allowed)
        # Proto and host, from one hop; only ever called for a trusted peer.
        self.forwarded = ProxyFix(app, x_for=0, x_proto=1, x_host=1)
        # Parsing the peer's address is most of this layer's cost: once per peer, not per request.
        self.trusts_peer = functools.lru_cache(maxsize=PEER_CACHE_SIZE)(lambda peer: self.trusts(_address(peer)))

    def trusts(self, address) -> bool:
        return address is not None and (self.any_peer or in_networks(address, self.networks))

    def client_address(self, peer: str, forwarded_for: str) -> str:
        """The address the nearest untrusted hop connected from."""
        client = peer
        for entry in reversed(forwarded_for.split(",")):
            hop = _address(entry)
            if hop is None:
                break
            client = str(hop)
            if self.any_peer or not self.trusts(hop):
                break
        return client

    def __call__(self, environ, start_response):
        peer = environ.get("REMOTE_ADDR", "")
        if not self.trusts_peer(peer):
            return self.app(environ, start_response)
        environ[PEER_ADDR_KEY] = peer
        forwarded_for = environ.get("HTTP_X_FORWARDED_FOR")
        if forwarded_for:
            # Without the header the peer is the client; parsing "" would raise and catch twice.
            environ["REMOTE_ADDR"] = self.client_address(peer, forwarded_for)
        if "HTTP_X_FORWARDED_PROTO" in environ or "HTTP_X_FORWARDED_HOST" in environ:
            return self.forwarded(environ, start_response)
        return self.app(environ, start_response)


def add_security_headers(response: Response) -> Response:
    """Each header the route did not set itself (one pass over its headers, not one per name)."""
    headers = response.headers
    present = {name.lower() for name, _ in headers}
    for key, (name, value) in _API_HEADERS_BY_KEY.items():
        if key not in present:
            headers.add(name, value)
    if request.is_secure and "strict-transport-security" not in present:
        headers.add("Strict-Transport-Security", HSTS)
    return response


def init_app(app: Flask) -> None:
    app.wsgi_app = TrustedProxies(app.wsgi_app, app.config["SETTINGS"].forwarded_allow_ips)
    app.after_request(add_security_headers)
