"""What every response carries, and which client the app believes it is talking to.

The client's address is the TCP peer's, unless the peer is a trusted proxy
(FORWARDED_ALLOW_IPS, with gunicorn's meaning and default). Then it is the
nearest X-Forwarded-For entry that is not itself a trusted proxy; with "*"
(any peer), exactly one hop: the entry the proxy added. An entry that is not
an IP address ends the walk, so a client cannot choose its own rate-limit key
by sending the header itself.

On Railway with FORWARDED_ALLOW_IPS unset, the edge is trusted rather than a
list of peers (settings.py says why and where the boundary lies): the client
is the edge's X-Real-IP on a request that bears the edge's marks and comes
from outside the private network's IPv6 range; any other request is its peer.
"""

import functools
import ipaddress
import logging

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
# Railway's edge stamps every request it forwards with its region, and the client's address.
EDGE_MARK = "HTTP_X_RAILWAY_EDGE"
EDGE_CLIENT = "HTTP_X_REAL_IP"
# Where private-network peers come from in Railway's legacy (IPv6-only) environments: never the edge.
PRIVATE_IPV6 = ipaddress.ip_network("fc00::/7")

log = logging.getLogger(__name__)


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

    def __init__(self, app, allowed: tuple[str, ...], railway_edge: bool = False):
        self.app = app
        self.railway_edge = railway_edge
        self.private_peer_seen = False
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

    def edge_client(self, environ, peer: str) -> str | None:
        """The client the edge names, on a request with the edge's marks from a peer that can be the edge."""
        if EDGE_MARK not in environ:
            return None
        client = _address(environ.get(EDGE_CLIENT, ""))
        if client is None:
            return None
        address = _address(peer)
        if address is None or address in PRIVATE_IPV6:
            if not self.private_peer_seen:
                # Once per worker: if the edge itself ever came from there, every client would share its count.
                self.private_peer_seen = True
                log.warning(
                    "A request bearing Railway's edge marks came from %s, on the private network: its X-Real-IP "
                    "is not believed (set FORWARDED_ALLOW_IPS if this peer is your proxy)",
                    peer,
                    extra={"peer_ip": peer},
                )
            return None
        return str(client)

    def __call__(self, environ, start_response):
        peer = environ.get("REMOTE_ADDR", "")
        if self.railway_edge:
            client = self.edge_client(environ, peer)
            if client is None:
                return self.app(environ, start_response)
            environ[PEER_ADDR_KEY] = peer
            environ["REMOTE_ADDR"] = client
            if "HTTP_X_FORWARDED_PROTO" in environ or "HTTP_X_FORWARDED_HOST" in environ:
                return self.forwarded(environ, start_response)
            return self.app(environ, start_response)
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
    settings = app.config["SETTINGS"]
    app.wsgi_app = TrustedProxies(app.wsgi_app, settings.forwarded_allow_ips, settings.railway_edge)
    app.after_request(add_security_headers)
