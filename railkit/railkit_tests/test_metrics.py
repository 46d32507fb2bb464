"""GET /metrics: who may read it, what it counts, and a real Prometheus scraping a cluster under load."""

import json
import logging
import os
import shutil
import signal
import subprocess
import threading
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
from prometheus_client import CONTENT_TYPE_LATEST

from railkit import project

from .fixture_app import create_app
from .servers import DEADLINE, free_port, wait_until

PREFIX = project.METRICS_PREFIX
TOKEN = "a-long-enough-scrape-token"
PUBLIC = {"REMOTE_ADDR": "203.0.113.9"}


@pytest.fixture
def make_app(monkeypatch):
    """Build the app from a clean environment plus `env`, with a route that has a variable part."""

    def make(**env):
        for name in (
            "REDIS_URL",
            "RATE_LIMIT",
            "METRICS",
            "METRICS_TOKEN",
            "FORWARDED_ALLOW_IPS",
            "RAILWAY_ENVIRONMENT_NAME",
        ):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        app = create_app({"TESTING": True})
        app.add_url_rule("/items/<int:item>", "item", lambda item: {"item": item})
        return app

    return make


def series(name: str, **labels: str) -> str:
    """A sample's name as Prometheus writes it: prefix, name and sorted labels."""
    pairs = ",".join(f'{label}="{value}"' for label, value in sorted(labels.items()))
    return f"{PREFIX}_{name}" + ("{" + pairs + "}" if labels else "")


def _samples(text: str) -> dict[str, float]:
    return {line.rpartition(" ")[0]: float(line.rpartition(" ")[2]) for line in text.splitlines() if line[:1] != "#"}


def _comparable(response) -> tuple:
    body = response.get_json()
    body.pop("instance"), body.pop("request_id")
    varying = ("X-Request-ID", "Content-Length")
    headers = sorted((name, value) for name, value in response.headers if name not in varying)
    return response.status_code, body, headers


def test_loopback_reads_request_counts_by_route_template(make_app):
    client = make_app().test_client()
    for item in range(3):
        client.get(f"/items/{item}")
    client.get("/no/such/path")
    client.get("/another/unknown")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == CONTENT_TYPE_LATEST, "one charset, as Prometheus writes it"
    samples = _samples(response.get_data(as_text=True))
    assert samples[series("http_requests_total", method="GET", route="/items/<int:item>", status="2xx")] >= 3
    assert samples[series("http_requests_total", method="GET", route="unmatched", status="4xx")] >= 2
    assert not any("/no/such/path" in name for name in samples), "raw paths must never become labels"
    assert series("http_request_duration_seconds_count", method="GET", route="/items/<int:item>") in samples


@pytest.mark.parametrize(
    ("env", "request_options"),
    [
        ({}, {"environ_base": PUBLIC}),
        ({}, {"headers": {"X-Railway-Edge": "railway/us-west2"}}),
        ({}, {"method": "POST"}),
        ({}, {"method": "OPTIONS"}),
        ({"METRICS_TOKEN": TOKEN}, {}),
        ({"METRICS_TOKEN": TOKEN}, {"headers": {"Authorization": "Bearer wrong-token-of-some-length"}}),
        ({"METRICS_TOKEN": TOKEN}, {"headers": {"Authorization": f"Basic {TOKEN}"}}),
    ],
    ids=["public-peer", "through-railways-edge", "post", "options", "token-missing", "token-wrong", "not-bearer"],
)
def test_refused_scrapes_look_exactly_like_an_unknown_path(make_app, env, request_options):
    client = make_app(**env).test_client()
    method = request_options.pop("method", "GET")
    refused = client.open("/metrics", method=method, **request_options)
    unknown = client.open("/not-metrics", method=method, **request_options)
    assert refused.status_code == 404
    assert refused.mimetype == "application/problem+json"
    assert _comparable(refused) == _comparable(unknown)


def test_the_token_opens_metrics_from_anywhere(make_app):
    client = make_app(METRICS_TOKEN=TOKEN).test_client()
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, environ_base=PUBLIC)
    assert response.status_code == 200
    assert f"{PREFIX}_http_requests_total" in response.get_data(as_text=True)


def test_metrics_off_drops_the_endpoint(make_app):
    client = make_app(METRICS="off").test_client()
    client.get("/items/1")
    assert client.get("/metrics").status_code == 404


def test_private_network_peers_may_scrape(make_app):
    client = make_app().test_client()
    for address in ("10.1.2.3", "fd12:3456::1", "192.168.0.4", "::1"):
        assert client.get("/metrics", environ_base={"REMOTE_ADDR": address}).status_code == 200, address


def test_scrapes_skip_the_rate_limit_and_the_access_log(make_app, caplog):
    caplog.set_level(logging.INFO)
    client = make_app(RATE_LIMIT="2/minute", ACCESS_LOG="all").test_client()
    assert {client.get("/metrics").status_code for _ in range(5)} == {200}
    # The scrapes used none of this client's quota.
    assert [client.get("/").status_code for _ in range(3)] == [200, 200, 429]
    refused = [client.get("/metrics", environ_base=PUBLIC).status_code for _ in range(3)]
    assert refused == [client.get("/nothing", environ_base=PUBLIC).status_code for _ in range(3)]
    logged = [record.getMessage() for record in caplog.records]
    assert not any(message.startswith("GET /metrics 200") for message in logged), logged
    assert any(message.startswith("GET /metrics 404") for message in logged), logged
    samples = _samples(client.get("/metrics").get_data(as_text=True))
    assert samples[series("rate_limited_total")] >= 1


# -- a real Prometheus ---------------------------------------------------------

PROMETHEUS = shutil.which("prometheus")
# Requests the load generator sends before and after a worker is killed.
LOAD_REQUESTS = 400
LOAD_THREADS = 4


@pytest.fixture
def prometheus(tmp_path):
    """Start a private Prometheus scraping `target` every second; yields a PromQL query function."""
    if PROMETHEUS is None:
        pytest.skip("needs Prometheus on PATH: `apt-get install prometheus`")
    started = []

    def start(target: str):
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            json.dumps(
                {
                    "global": {"scrape_interval": "1s", "scrape_timeout": "900ms"},
                    "scrape_configs": [{"job_name": "cluster", "static_configs": [{"targets": [target]}]}],
                }
            )
        )
        process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--web.enable-lifecycle",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append(process)
        base = f"http://127.0.0.1:{port}"

        def ready():
            try:
                return urllib.request.urlopen(f"{base}/-/ready", timeout=2).status == 200
            except OSError:
                return False

        wait_until(ready, message="Prometheus ready")

        def query(promql: str) -> float | None:
            url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
            with urllib.request.urlopen(url, timeout=5) as response:
                result = json.load(response)["data"]["result"]
            return float(result[0]["value"][1]) if result else None

        return query

    yield start
    for process in started:
        process.kill()
        process.wait()


def _load(server, count: int) -> int:
    """Send `count` GET / from several threads; return how many were answered 200."""
    answered = []
    turns = iter(range(count))
    lock = threading.Lock()

    def client():
        while True:
            with lock:
                if next(turns, None) is None:
                    return
            try:
                answered.append(server.request("/", timeout=10)[0] == 200)
            except OSError:
                answered.append(False)

    threads = [threading.Thread(target=client) for _ in range(LOAD_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(answered)


@pytest.mark.cluster
def test_prometheus_counts_every_request_across_workers_and_a_killed_one(serve, prometheus):
    server = serve({"WEB_CONCURRENCY": "3", "RATE_LIMIT": "off"})
    query = prometheus(f"127.0.0.1:{server.port}")
    total = f"sum({series('http_requests_total', route='/')})"
    wait_until(lambda: query(series("workers_live")) == 3, message="Prometheus scraping 3 live workers")

    sent = _load(server, LOAD_REQUESTS)
    victim = min(server.worker_pids())
    os.kill(victim, signal.SIGKILL)
    server.wait_for_workers(3, without=victim)
    sent += _load(server, LOAD_REQUESTS)
    assert sent >= LOAD_REQUESTS * 2 * 0.99

    def counted():
        value = query(total)
        return value is not None and abs(value - sent) <= sent * 0.01

    wait_until(counted, timeout=DEADLINE, interval=0.5, message=f"Prometheus to count {sent} requests")
    assert query(f"sum({series('worker_deaths_total', cause='killed')})") == 1
    assert query(f"sum({series('worker_starts_total')})") >= 4
    # A counter that drops (a dead worker's counts vanishing) is a reset to Prometheus.
    assert query(f"sum(resets({series('http_requests_total')}[5m]))") == 0
    assert query(f"count({series('worker_memory_uss_bytes')} > 0)") == 3


@pytest.mark.cluster
def test_the_masters_events_are_counted(serve):
    server = serve({"WEB_CONCURRENCY": "2", "WORKER_MAX_MEMORY_MB": "64"}, app="railkit_tests.faulty_app:app")
    server.wait_for_workers(2)
    # However the 6 requests are shared, one worker holds 90 MB or more: past 64 whatever its own size.
    assert [server.request("/leak?mb=30")[0] for _ in range(6)] == [200] * 6
    server.wait_for_log(lambda log: "memory limit" in log.get("cause", ""), message="a memory recycle")
    samples = _samples(server.request("/metrics")[2].decode())
    assert samples[series("memory_recycles_total")] >= 1
    assert samples[series("worker_deaths_total", cause="memory")] >= 1
    assert samples[series("worker_starts_total")] >= 3
    assert samples[series("stuck_request_aborts_total")] == 0


@pytest.mark.cluster
def test_busy_workers_and_the_oldest_request_are_read_from_the_board_at_scrape_time(serve):
    """No request pays for them: the board already holds each worker's oldest request, for the watchdog."""
    server = serve({"WEB_CONCURRENCY": "2", "RATE_LIMIT": "off"}, app="railkit_tests.faulty_app:app")
    server.wait_for_workers(2)

    def scraped() -> dict[str, float]:
        return _samples(server.request("/metrics")[2].decode())

    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(server.request, "/slow?seconds=8")
        server.wait_for_log(lambda log: log.get("message") == "slow request started")
        busy = wait_until(lambda: (samples := scraped())[series("oldest_request_age_seconds")] >= 1 and samples)
        # The slow request's worker, and perhaps the scrape's own.
        assert busy[series("workers_busy")] >= 1
        assert slow.result()[0] == 200
    # Idle again: only the scrape itself is being worked on.
    wait_until(lambda: scraped()[series("oldest_request_age_seconds")] < 1, message="the oldest age to drop")


def _metrics_folder(server) -> Path:
    # The master keeps its own metrics files open there.
    opened = {Path(file.path).parent for file in psutil.Process(server.process.pid).open_files()}
    [folder] = [path for path in opened if path.name == "metrics"]
    return folder


@pytest.mark.cluster
def test_metrics_folder_is_private_and_removed_at_exit(serve):
    server = serve({"WEB_CONCURRENCY": "2"})
    server.wait_for_workers(2)
    status, _, body = server.request("/metrics")
    assert status == 200 and f"{series('workers_live')} 2.0" in body.decode()
    folder = _metrics_folder(server)
    assert folder.stat().st_mode & 0o777 == 0o700
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
    assert not folder.exists()


@pytest.mark.cluster
def test_a_killed_masters_folder_is_removed_by_the_next_start(serve):
    killed = serve({"ENABLE_CLUSTERING": "false"})
    folder = _metrics_folder(killed)
    os.killpg(killed.process.pid, signal.SIGKILL)
    killed.wait_exit()
    assert folder.exists(), "SIGKILL runs no exit handler"
    serve({"ENABLE_CLUSTERING": "false", "XDG_RUNTIME_DIR": killed.env["XDG_RUNTIME_DIR"]})
    assert not folder.exists()
