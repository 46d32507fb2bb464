"""The client's address: forwarded headers are believed only from trusted peers, so no client picks its own."""

import uuid

import pytest

from my_service import create_app


@pytest.fixture
def whoami(monkeypatch):
    """Ask an app built with `env` which address it believes a request came from."""

    def ask(peer: str, forwarded_for: str | None = None, **env) -> str:
        for name in ("FORWARDED_ALLOW_IPS", "RAILWAY_ENVIRONMENT_NAME", "RAILWAY_PROJECT_ID", "RAILWAY_SERVICE_ID"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        app = create_app({"TESTING": True})

        @app.get("/whoami")
        def who():
            from flask import request

            return {"ip": request.remote_addr}

        headers = {"X-Forwarded-For": forwarded_for} if forwarded_for is not None else {}
        response = app.test_client().get("/whoami", headers=headers, environ_base={"REMOTE_ADDR": peer})
        return response.get_json()["ip"]

    return ask


def test_an_untrusted_peer_cannot_forward_an_address(whoami):
    assert whoami("198.51.100.4", "1.2.3.4") == "198.51.100.4"


def test_gunicorns_default_trusts_a_proxy_on_this_host(whoami):
    assert whoami("127.0.0.1", "6.6.6.6, 203.0.113.7") == "203.0.113.7"
    assert whoami("::1", "203.0.113.8") == "203.0.113.8"
    assert whoami("127.0.0.1") == "127.0.0.1"  # no X-Forwarded-For: the proxy's own request


@pytest.mark.parametrize("garbage", ["random-words", "999.1.1.1", "", "203.0.113.7:443", "unknown"])
def test_values_that_are_not_addresses_are_ignored(whoami, garbage):
    assert whoami("127.0.0.1", garbage) == "127.0.0.1"


def test_a_chain_of_trusted_proxies_is_walked_to_the_first_untrusted_hop(whoami):
    env = {"FORWARDED_ALLOW_IPS": "10.0.0.0/8"}
    assert whoami("10.0.0.2", "6.6.6.6, 203.0.113.9, 10.0.0.3", **env) == "203.0.113.9"
    assert whoami("127.0.0.1", "203.0.113.9", **env) == "127.0.0.1"


def test_on_railway_the_edges_hop_is_the_client(whoami):
    railway = {"RAILWAY_ENVIRONMENT_NAME": "production"}
    # A client's own X-Forwarded-For comes first; the edge appends the address it saw.
    assert whoami("100.64.0.2", "6.6.6.6, 203.0.113.7", **railway) == "203.0.113.7"
    assert whoami("100.64.0.2", "not-an-ip", **railway) == "100.64.0.2"
    assert whoami("100.64.0.2", "203.0.113.7", FORWARDED_ALLOW_IPS="127.0.0.1", **railway) == "100.64.0.2"


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
