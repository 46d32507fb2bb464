"""The client's address: forwarded headers are believed only from trusted peers, so no client picks its own."""

import ipaddress
import uuid

import pytest

from railkit.cluster.workers import peers

from .fixture_app import create_app


@pytest.fixture
def whoami(monkeypatch):
    """Ask an app built with `env` which address it believes a request came from."""

    def ask(peer: str, forwarded_for: str | None = None, headers: dict | None = None, **env) -> str:
        for name in ("FORWARDED_ALLOW_IPS", "RAILWAY_ENVIRONMENT_NAME", "RAILWAY_PROJECT_ID", "RAILWAY_SERVICE_ID"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        app = create_app({"TESTING": True})

        @app.get("/whoami")
        def who():
            from flask import request

            return {"ip": request.remote_addr}

        sent = {**(headers or {}), **({"X-Forwarded-For": forwarded_for} if forwarded_for is not None else {})}
        response = app.test_client().get("/whoami", headers=sent, environ_base={"REMOTE_ADDR": peer})
        return response.get_json()["ip"]

    return ask


def test_an_untrusted_peer_cannot_forward_an_address(whoami):
    assert whoami("198.51.100.4", "1.2.3.4") == "198.51.100.4"


def test_gunicorns_default_trusts_a_proxy_on_this_host(whoami):
    assert whoami("127.0.0.1", "6.6.6.6, 203.0.113.7") == "203.0.113.7"
    assert whoami("::1", "203.0.113.8") == "203.0.113.8"
    assert whoami("127.0.0.1") == "127.0.0.1"  # no X-Forwarded-For: the proxy's own request


def test_an_ipv4_peer_on_the_dual_stack_socket_is_its_ipv4_address(whoami):
    """[::] reports an IPv4 peer as ::ffff:a.b.c.d: a proxy listed by its IPv4 address is still trusted."""
    assert whoami("::ffff:127.0.0.1", "203.0.113.7") == "203.0.113.7"
    assert whoami("::ffff:10.0.0.2", "203.0.113.9", FORWARDED_ALLOW_IPS="10.0.0.0/8") == "203.0.113.9"
    assert whoami("::ffff:198.51.100.4", "1.2.3.4") == "::ffff:198.51.100.4"
    # Listed in its IPv6 form, as gunicorn reads it.
    assert whoami("::ffff:10.0.0.2", "203.0.113.9", FORWARDED_ALLOW_IPS="::ffff:10.0.0.2") == "203.0.113.9"


@pytest.mark.parametrize("garbage", ["random-words", "999.1.1.1", "", "203.0.113.7:443", "unknown"])
def test_values_that_are_not_addresses_are_ignored(whoami, garbage):
    assert whoami("127.0.0.1", garbage) == "127.0.0.1"


def test_a_chain_of_trusted_proxies_is_walked_to_the_first_untrusted_hop(whoami):
    env = {"FORWARDED_ALLOW_IPS": "10.0.0.0/8"}
    assert whoami("10.0.0.2", "6.6.6.6, 203.0.113.9, 10.0.0.3", **env) == "203.0.113.9"
    assert whoami("127.0.0.1", "203.0.113.9", **env) == "127.0.0.1"


# What Railway's edge adds to every request it forwards: its region, and the client it saw.
EDGE = {"X-Railway-Edge": "railway/us-west2", "X-Real-IP": "203.0.113.7"}


def test_on_railway_the_edge_names_the_client(whoami):
    railway = {"RAILWAY_ENVIRONMENT_NAME": "production"}
    assert whoami("100.64.0.2", "6.6.6.6, 203.0.113.7", headers=EDGE, **railway) == "203.0.113.7"
    # The edge's X-Real-IP, whatever the client put in X-Forwarded-For.
    assert whoami("100.64.0.2", "6.6.6.6", headers=EDGE, **railway) == "203.0.113.7"
    assert whoami("::ffff:100.64.0.2", headers={**EDGE, "X-Real-IP": "2001:db8::7"}, **railway) == "2001:db8::7"
    assert whoami("100.64.0.2", headers={**EDGE, "X-Real-IP": "not-an-ip"}, **railway) == "100.64.0.2"


def test_on_railway_a_peer_without_the_edges_marks_is_its_own_client(whoami):
    """Any service on the project's private network reaches the port: without the edge's marks it names nobody."""
    railway = {"RAILWAY_ENVIRONMENT_NAME": "production"}
    assert whoami("100.64.0.2", "203.0.113.7", **railway) == "100.64.0.2"
    assert whoami("10.1.2.3", headers={"X-Real-IP": "203.0.113.7"}, **railway) == "10.1.2.3"
    assert whoami("10.1.2.3", headers={"X-Railway-Edge": "railway/us-west2"}, **railway) == "10.1.2.3"


def test_on_railway_the_private_networks_ipv6_peers_are_never_the_edge(whoami):
    """Legacy environments' private network is IPv6 (fd12::/16, in fc00::/7); the edge reaches the port over IPv4."""
    railway = {"RAILWAY_PROJECT_ID": "p"}
    assert whoami("fd12:3456::9", "203.0.113.7", headers=EDGE, **railway) == "fd12:3456::9"


def test_on_railway_an_explicit_allow_list_replaces_the_edge_rule(whoami):
    railway = {"RAILWAY_ENVIRONMENT_NAME": "production"}
    assert whoami("100.64.0.2", "203.0.113.7", headers=EDGE, FORWARDED_ALLOW_IPS="127.0.0.1", **railway) == (
        "100.64.0.2"
    )
    assert whoami("100.64.0.2", "203.0.113.9", FORWARDED_ALLOW_IPS="100.64.0.0/10", **railway) == "203.0.113.9"


@pytest.mark.cluster
@pytest.mark.parametrize(
    ("env", "forged"),
    [
        ({}, [uuid.uuid4().hex for _ in range(12)]),
        ({"FORWARDED_ALLOW_IPS": "10.9.9.9"}, [f"203.0.113.{turn}" for turn in range(12)]),
    ],
    ids=["non-ip-values-from-a-trusted-peer", "addresses-from-an-untrusted-peer"],
)
def test_forged_forwarded_for_values_share_the_peers_limit(serve, env, forged):
    """A real gunicorn: a client that sends made-up X-Forwarded-For values is still one client."""
    server = serve({"RATE_LIMIT": "5/minute", "ENABLE_CLUSTERING": "false", **env})
    statuses = [server.request("/", headers={"X-Forwarded-For": value})[0] for value in forged]
    assert statuses == [200] * 5 + [429] * (len(forged) - 5)


# (peer, allow list, trusted): gunicorn's answers, and a mapped IPv4 peer listed as written or as its IPv4 address.
PEER_CHECKS = [
    ("127.0.0.1", ["127.0.0.1", "::1"], True),
    ("::1", ["127.0.0.1", "::1"], True),
    ("::ffff:127.0.0.1", ["127.0.0.1", "::1"], True),
    ("::FFFF:10.1.2.3", ["10.0.0.0/8"], True),
    ("::ffff:a01:203", ["10.0.0.0/8"], True),  # 10.1.2.3, written in hex
    ("::ffff:10.1.2.3", ["::ffff:10.1.2.3"], True),
    ("10.1.2.3", ["::ffff:0:0/96"], False),  # gunicorn's own answer: an IPv4 peer is not an IPv6 entry
    ("::ffff:203.0.113.7", ["10.0.0.0/8"], False),
    ("203.0.113.7", ["10.0.0.0/8"], False),
    ("203.0.113.7", ["*"], True),
    ("not-an-ip", ["10.0.0.0/8"], False),
    ("", ["10.0.0.0/8"], False),
    ("::ffff:999.1.1.1", ["10.0.0.0/8"], False),
]


def test_gunicorns_peer_check_reads_mapped_ipv4_and_remembers_each_answer(monkeypatch):
    """The worker's check of gunicorn's allow lists: the right answer, first from the check, then from memory."""
    monkeypatch.setattr(peers, "_answers", {})
    for peer, allow, trusted in PEER_CHECKS:
        networks = [ipaddress.ip_network(entry) for entry in allow if entry != "*"]
        answers = [peers.cached_peer_in_allow_list(peer, allow, networks) for _ in range(2)]
        assert answers == [trusted, trusted], (peer, allow)
        assert peers._answers[(peer, tuple(allow))] is trusted
    # One peer, two lists: two answers.
    loopback = ["127.0.0.1"]
    assert peers.cached_peer_in_allow_list("::ffff:10.1.2.3", loopback, [ipaddress.ip_network("127.0.0.1")]) is False


def test_the_peer_memory_is_bounded(monkeypatch):
    monkeypatch.setattr(peers, "_answers", {})
    monkeypatch.setattr(peers, "PEER_CACHE_SIZE", 4)
    for last in range(10):
        peers.cached_peer_in_allow_list(f"203.0.113.{last}", ["*"], [])
        assert len(peers._answers) <= 4


@pytest.mark.cluster
def test_a_local_ipv4_proxy_is_trusted_by_gunicorn_and_the_app(serve):
    """A real gunicorn on the dual-stack socket, reached over IPv4 as by a local proxy: its HTTPS and client count."""
    # X-Forwarded-Ssl: gunicorn reads it (secure_scheme_headers), the app does not, so HSTS shows gunicorn's trust.
    forwarded = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Ssl": "on"}
    env = {"ENABLE_CLUSTERING": "false", "ACCESS_LOG": "all", "RATE_LIMIT": "off"}
    trusting, wary = serve(env), serve({**env, "FORWARDED_ALLOW_IPS": "10.9.9.9"})
    for _ in range(3):  # the answer is remembered after the first request: it must not change
        assert "Strict-Transport-Security" in trusting.request("/", headers=forwarded)[1]
        assert "Strict-Transport-Security" not in wary.request("/", headers=forwarded)[1]
    # The dual-stack socket's ::ffff:127.0.0.1 is logged as the IPv4 address it is.
    for server, client in ((trusting, "203.0.113.9"), (wary, "127.0.0.1")):
        logged = server.wait_for_log(lambda line: line.get("path") == "/" and "client_ip" in line)
        assert logged["client_ip"] == client
