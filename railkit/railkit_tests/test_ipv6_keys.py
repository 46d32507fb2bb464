"""IPv6 clients are counted by prefix, and IPv6 forms of an IPv4 address as that address.

One subscriber is given a /56 (or a /64, or a /48) and may use any address in
it: keyed per address, one client rotating addresses is never limited. The
requests go through the real client-address path: a trusted proxy (the
loopback, gunicorn's default) names the client in X-Forwarded-For.
"""

import pytest

from railkit.settings import SettingError, Settings
from railkit.web.ratelimit import rate_limit_key

from .fixture_app import create_app

LIMIT = 5


@pytest.fixture
def limited(monkeypatch):
    """A test client of an app limited to LIMIT a minute, behind a proxy on this host, with `env`."""

    def build(**env):
        for name in ("REDIS_URL", "FORWARDED_ALLOW_IPS", "RATE_LIMIT_IPV6_PREFIX", "RAILWAY_ENVIRONMENT_NAME"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("RATE_LIMIT", f"{LIMIT}/minute")
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        client = create_app({"TESTING": True}).test_client()

        def status(address: str) -> int:
            return client.get("/", headers={"X-Forwarded-For": address}).status_code

        return status

    return build


def test_addresses_rotating_inside_one_56_are_one_client(limited):
    status = limited()
    # 20 addresses across the /64s of one /56 (2001:db8:0:ab00::/56).
    addresses = [f"2001:db8:0:ab{subnet:02x}::{subnet + 1000:x}" for subnet in range(20)]
    assert [status(address) for address in addresses] == [200] * LIMIT + [429] * (20 - LIMIT)


def test_addresses_in_different_56s_are_different_clients(limited):
    status = limited()
    assert [status(f"2001:db8:0:{block:x}00::1") for block in range(1, 21)] == [200] * 20


def test_the_prefix_is_configurable(limited):
    status = limited(RATE_LIMIT_IPV6_PREFIX="/64")
    # Two /64s of one /56: separate clients at /64.
    assert [status(f"2001:db8:0:ab01::{host:x}") for host in range(1, 8)] == [200] * LIMIT + [429] * 2
    assert [status(f"2001:db8:0:ab02::{host:x}") for host in range(1, 4)] == [200] * 3


@pytest.mark.parametrize(
    "forms",
    [
        ["198.51.100.7", "::ffff:198.51.100.7", "64:ff9b::198.51.100.7", "2002:c633:6407::1", "::198.51.100.7"],
        ["::ffff:c633:6407", "64:ff9b::c633:6407", "2002:c633:6407:ffff::9", "198.51.100.7", "::c633:6407"],
    ],
    ids=["written-with-dots", "written-in-hex"],
)
def test_ipv6_forms_of_one_ipv4_address_are_one_client(limited, forms):
    """IPv4-mapped, NAT64 (64:ff9b::/96), 6to4 (2002::/16) and IPv4-compatible: 198.51.100.7 each time."""
    status = limited()
    assert [status(form) for form in [*forms, *forms]] == [200] * LIMIT + [429] * (2 * len(forms) - LIMIT)
    assert status("198.51.100.8") == 200, "the neighbouring IPv4 address is another client"


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1::/56"),
        ("2001:DB8:1:2FF::1", "2001:db8:1:200::/56"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("64:ff9b::a00:1", "10.0.0.1"),
        ("2002:a00:1::", "10.0.0.1"),
        ("::a00:1", "10.0.0.1"),
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "10.0.0.1"),  # Teredo: the client's address, inverted
        ("::1", "::/56"),
        ("::", "::/56"),
        ("unknown", "unknown"),
    ],
)
def test_rate_limit_keys_at_56(address, key):
    assert rate_limit_key(address, 56) == key


@pytest.mark.parametrize("value", ["abc", "0", "/8", "129", "56.5", "-56", ""])
def test_a_nonsense_prefix_is_refused_naming_the_variable(value):
    with pytest.raises(SettingError) as refused:
        Settings.from_env({"RATE_LIMIT_IPV6_PREFIX": value})
    assert refused.value.variable == "RATE_LIMIT_IPV6_PREFIX"


@pytest.mark.parametrize(("value", "prefix"), [(None, 56), ("64", 64), ("/48", 48), (" 56 ", 56)])
def test_the_prefix_setting(value, prefix):
    environ = {} if value is None else {"RATE_LIMIT_IPV6_PREFIX": value}
    assert Settings.from_env(environ).rate_limit_ipv6_prefix == prefix


@pytest.mark.cluster
def test_a_real_gunicorn_counts_an_ipv6_prefix_once(serve):
    """Through gunicorn and the loopback proxy: rotating addresses of one /56, then one of another /56."""
    server = serve({"RATE_LIMIT": "3/minute", "ENABLE_CLUSTERING": "false"})
    rotating = [f"2001:db8:5:{subnet:x}::{subnet + 7:x}" for subnet in range(6)]
    statuses = [server.request("/", headers={"X-Forwarded-For": address})[0] for address in rotating]
    assert statuses == [200] * 3 + [429] * 3
    assert server.request("/", headers={"X-Forwarded-For": "2001:db8:5:100::1"})[0] == 200
