"""The fallbacks for hosts that lack something: real clusters where the kernel really lacks it.

tests/kernel_refusals.py starts gunicorn under a seccomp filter, so the
kernel itself answers the refused system call with the platform's error;
a network namespace gives a host whose IPv6 is switched off.
"""

import os
import shutil
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest

from .kernel_refusals import supported
from .servers import FIXTURE_APP, message_starts, wait_until

pytestmark = pytest.mark.cluster

UNSUPPORTED = supported()
needs_seccomp = pytest.mark.skipif(bool(UNSUPPORTED), reason=f"kernel refusals: {UNSUPPORTED}")
FAULTY = "railkit_tests.faulty_app:app"


def _refusing(refusal: str, app: str) -> list[str]:
    """The start command, on a kernel that refuses `refusal`."""
    return [sys.executable, "-m", "railkit_tests.kernel_refusals", refusal, "--", sys.executable, "-m", "gunicorn", app]


@needs_seccomp
def test_sigterm_without_socket_filters_stops_gracefully_without_the_drain(serve):
    """Where SO_ATTACH_FILTER is refused (EPERM), SIGTERM skips the drain: requests in flight still finish."""
    server = serve({"WEB_CONCURRENCY": "2", "GRACEFUL_TIMEOUT": "10"}, command=_refusing("socket-filters", FAULTY))
    with ThreadPoolExecutor(2) as pool:
        in_flight = [pool.submit(server.request, "/slow?seconds=2") for _ in range(2)]
        started = message_starts("slow request started")
        wait_until(lambda: len(list(filter(started, server.logs))) >= 2, message="2 slow requests")
        server.signal(signal.SIGTERM)
        statuses = [future.result()[0] for future in in_flight]
    assert statuses == [200, 200]
    assert server.wait_exit() == 0
    fallback = server.wait_for_log(message_starts("New connections cannot be refused"), message="the fallback's line")
    assert fallback["level"] == "warn"
    assert not [log for log in server.logs if log.get("forced")], "workers outlived GRACEFUL_TIMEOUT"


@needs_seccomp
def test_kernel_without_ipv6_listens_on_ipv4(serve):
    """socket(AF_INET6) refused (EAFNOSUPPORT, a kernel booted with ipv6.disable=1): bound to 0.0.0.0, served."""
    server = serve({"WEB_CONCURRENCY": "1"}, command=_refusing("ipv6", FIXTURE_APP))
    assert server.request("/health")[0] == 200
    listening = [
        connection.laddr
        for connection in psutil.Process(server.process.pid).net_connections("tcp")
        if connection.status == psutil.CONN_LISTEN
    ]
    assert listening == [("0.0.0.0", server.port)]
    server.wait_for_log(message_starts(f"Listening at: http://0.0.0.0:{server.port}"), message="the listening line")
    assert not [log for log in server.logs if log.get("level") in ("error", "critical")]


# Prints each URL's status, or the error that stopped it.
FETCH = """
import sys, urllib.request
for url in sys.argv[1:]:
    try:
        print(urllib.request.urlopen(url, timeout=2).status)
    except OSError as error:
        print(type(error).__name__)
"""


def _namespaces_unavailable() -> str | None:
    """Why the test cannot make a network namespace here, or None if it can."""
    if os.geteuid() != 0:
        return "needs root to make a network namespace (CI runs as root): run the tests as root to enable it"
    missing = [tool for tool in ("unshare", "nsenter", "ip", "sysctl") if shutil.which(tool) is None]
    if missing:
        return f"needs {', '.join(missing)} (util-linux, iproute2, procps) to make a network namespace"
    return None


@pytest.mark.parametrize(
    "sysctls",
    [
        ["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.lo.disable_ipv6=1"],
        ["net.ipv6.bindv6only=1"],
    ],
    ids=["ipv6-disabled", "bindv6only"],
)
def test_host_with_ipv6_switched_off_still_serves_ipv4_clients(serve, sysctls):
    """A host whose IPv6 is off by sysctl (Docker's default without an IPv6 network), or whose
    [::] sockets are IPv6-only (bindv6only): IPv4 clients are served.

    Such a host can still bind [::] (only a kernel without IPv6 cannot, above),
    so the cluster listens there and must take IPv4 connections, on [::] or beside it.
    """
    reason = _namespaces_unavailable()
    if reason:
        pytest.skip(reason)
    setup = f'ip link set lo up && sysctl -qw {" ".join(sysctls)} && exec "$@"'
    command = ["unshare", "--net", "sh", "-c", setup, "sh", sys.executable, "-m", "gunicorn", FIXTURE_APP]
    server = serve({"WEB_CONCURRENCY": "1"}, command=command, wait=False)

    def inside_the_namespace(*urls: str) -> list[str]:
        if server.process.poll() is not None:
            raise AssertionError(f"server exited with {server.process.returncode}:\n{''.join(server.lines)}")
        namespace = f"--net=/proc/{server.process.pid}/ns/net"
        run = subprocess.run(["nsenter", namespace, sys.executable, "-c", FETCH, *urls], capture_output=True, text=True)
        return run.stdout.split()

    ipv4, ipv6 = f"{server.url}/health", f"http://[::1]:{server.port}/health"
    wait_until(lambda: "200" in inside_the_namespace(ipv4, ipv6), message=f"/health on port {server.port}")
    assert inside_the_namespace(ipv4) == ["200"]
