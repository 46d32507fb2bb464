"""Redeploys lose no request: the lame-duck phase at SIGTERM, with and without a proxy in front.

Railway's edge switches from the old deployment to the new one at about the
moment the old one gets SIGTERM, in either order. The proxy tests put a real
nginx, holding a keep-alive pool to its upstream, in front of an old and a
new cluster under steady load, and switch it with a graceful reload.
"""

import http.client
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from .servers import free_port, wait_until

pytestmark = pytest.mark.cluster

FAULTY = "railkit_tests.faulty_app:app"
NGINX = shutil.which("nginx") or next((path for path in ("/usr/sbin/nginx",) if os.path.exists(path)), None)
# Client threads of the steady load, each on its own keep-alive connection to the proxy.
CLIENTS = 12
# The app's work per request (s).
WORK = "0.02"
# The old cluster's lame-duck phase (s), and the draining time Railway gives it (railway.ts).
SHUTDOWN_DELAY = 3
GRACEFUL_TIMEOUT = 10
DRAINING_SECONDS = SHUTDOWN_DELAY + GRACEFUL_TIMEOUT + 5

NGINX_CONF = """
{user}
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream app {{
        server 127.0.0.1:{upstream};
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


class Nginx:
    """A real nginx on loopback, in its own prefix, proxying to one upstream port."""

    def __init__(self, upstream: int):
        self.prefix = Path(tempfile.mkdtemp(prefix="nginx-"))
        self.port = free_port()
        self.configure(upstream)
        self.process = subprocess.Popen(
            [NGINX, "-p", str(self.prefix), "-c", str(self.prefix / "nginx.conf"), "-e", str(self.prefix / "err")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._answers, message="nginx to answer")

    def configure(self, upstream: int) -> None:
        user = "user root;" if os.geteuid() == 0 else ""
        conf = NGINX_CONF.format(user=user, prefix=self.prefix, upstream=upstream, port=self.port)
        (self.prefix / "nginx.conf").write_text(conf)

    def switch_to(self, upstream: int) -> None:
        """Point the proxy at another upstream with a graceful reload, as an edge switch does."""
        self.configure(upstream)
        self.process.send_signal(signal.SIGHUP)

    def upstream_errors(self) -> list[str]:
        """What nginx logged against the upstreams: a refused connect, or one closed under a request.

        nginx retries a request whose pooled connection the server closed
        under it, so the client never sees that race; its log does.
        """
        log = (self.prefix / "error.log").read_text()
        return [line for line in log.splitlines() if "upstream" in line and "[error]" in line]

    def _answers(self) -> bool:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            connection.request("GET", "/health")
            return connection.getresponse().status == 200
        except OSError:
            return False

    def stop(self) -> None:
        # SIGTERM: nginx's fast shutdown stops its workers too (SIGKILL would orphan
        # them, still holding the port); SIGKILL only if it does not exit.
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.prefix, ignore_errors=True)


class SteadyLoad:
    """CLIENTS threads sending requests back to back on keep-alive connections, counting failures.

    Like any HTTP client, a thread reconnects and retries once when a reused
    keep-alive connection turns out closed before any answer arrived.
    """

    def __init__(self, port: int, path: str):
        self.port, self.path = port, path
        self.running = True
        self.ok = 0
        self.failed: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(CLIENTS)]
        for thread in self.threads:
            thread.start()

    def _client(self):
        connection = None
        while self.running:
            outcome = None
            for attempt in (1, 2):
                fresh = connection is None
                if fresh:
                    connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
                try:
                    connection.request("GET", self.path)
                    response = connection.getresponse()
                    response.read()
                    outcome = response.status
                    if response.will_close:
                        connection.close()
                        connection = None
                    break
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as error:
                    connection.close()
                    connection = None
                    outcome = repr(error)
                    if fresh or attempt == 2:
                        break
                except OSError as error:
                    connection.close()
                    connection = None
                    outcome = repr(error)
                    break
            with self.lock:
                if outcome == 200:
                    self.ok += 1
                else:
                    self.failed.append(str(outcome))

    def stop(self) -> tuple[int, list[str]]:
        self.running = False
        for thread in self.threads:
            thread.join(30)
        return self.ok, self.failed


def _cluster(serve, **env):
    settings = {
        "WEB_CONCURRENCY": "2",
        "SHUTDOWN_DELAY": str(SHUTDOWN_DELAY),
        "GRACEFUL_TIMEOUT": str(GRACEFUL_TIMEOUT),
        # Every request comes from the proxy's one address: no per-client limit here.
        "RATE_LIMIT": "100000/second",
    }
    return serve({**settings, **env}, app=FAULTY)


def _served_by(server, count: int) -> bool:
    return sum(row for row in _requests(server)) >= count


def _requests(server) -> list[int]:
    from railkit.cluster.runtime import find_live_board

    board = find_live_board(server.port, base=Path(server.env["XDG_RUNTIME_DIR"]))
    return [slot.requests for slot in board.workers()] if board else [0]


@pytest.mark.skipif(NGINX is None, reason="needs nginx (apt-get install nginx) to play Railway's edge")
@pytest.mark.parametrize("order", ["switch-then-sigterm", "sigterm-1s-before-switch"])
@pytest.mark.load
def test_redeploy_through_a_proxy_loses_no_request(serve, order):
    old, new = _cluster(serve), _cluster(serve)
    proxy = Nginx(old.port)
    try:
        load = SteadyLoad(proxy.port, f"/slow?seconds={WORK}")
        wait_until(lambda: _served_by(old, 200), message="steady load on the old cluster")
        started = time.monotonic()
        if order == "switch-then-sigterm":
            proxy.switch_to(new.port)
            old.signal(signal.SIGTERM)
        else:
            old.signal(signal.SIGTERM)
            time.sleep(1)  # the edge's switch lags the SIGTERM by a second: that is the scenario
            proxy.switch_to(new.port)
        assert old.wait_exit(timeout=DRAINING_SECONDS + 5) == 0
        stopped_after = time.monotonic() - started
        wait_until(lambda: _served_by(new, 200), message="steady load on the new cluster")
        ok, failed = load.stop()
        upstream_errors = proxy.upstream_errors()
    finally:
        proxy.stop()
    assert failed == [], f"{len(failed)} of {ok + len(failed)} requests failed: {sorted(set(failed))}"
    assert upstream_errors == []
    assert ok > 400
    assert stopped_after < DRAINING_SECONDS
    assert old.wait_for_log(lambda log: log.get("phase") == "lame duck")["shutdown_delay_s"] == SHUTDOWN_DELAY


def test_lame_duck_phase_serves_direct_clients_and_fails_readiness(serve):
    """No proxy: the phase costs a direct client nothing beyond the delay itself."""
    delay = 8  # longer than the others' 3 s: a busy machine's stall of a second must not end the phase mid-loop
    server = _cluster(serve, SHUTDOWN_DELAY=str(delay))
    server.signal(signal.SIGTERM)
    started = time.monotonic()
    phase = server.wait_for_log(lambda log: log.get("phase") == "lame duck")
    assert phase["shutdown_delay_s"] == delay
    status, headers, _ = server.request("/")
    assert status == 200
    assert headers["Connection"] == "close"
    status, headers, _ = server.request("/health/ready")
    assert status == 503
    assert headers["Content-Type"] == "application/problem+json"
    durations = []
    while time.monotonic() - started < delay - 4:
        before = time.monotonic()
        assert server.request(f"/slow?seconds={WORK}")[0] == 200
        durations.append(time.monotonic() - before)
    assert server.wait_exit(timeout=delay + GRACEFUL_TIMEOUT) == 0
    # After the delay the idle workers stop by themselves: none waits out the graceful timeout to be killed.
    assert not [log for log in server.logs if log.get("forced")], "an idle worker was forced"
    # No request is held until the phase ends (that would take seconds more).
    assert max(durations) < 2.5


def test_second_sigterm_skips_the_delay(serve):
    server = _cluster(serve, SHUTDOWN_DELAY="60")
    server.signal(signal.SIGTERM)
    server.wait_for_log(lambda log: log.get("phase") == "lame duck")
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    assert server.wait_exit(timeout=15) == 0
    assert time.monotonic() - started < 10
