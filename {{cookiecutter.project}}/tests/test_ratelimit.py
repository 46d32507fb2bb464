"""One rate limit shared by two gunicorn servers (two "replicas") through a real Redis."""

import shutil
import subprocess

import pytest

from .servers import free_port, wait_until

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(
        shutil.which("redis-server") is None,
        reason="needs redis-server on PATH: install it (e.g. `sudo apt-get install redis-server`), as CI does",
    ),
]


@pytest.fixture
def redis_url(tmp_path):
    """A private redis-server on a free loopback port, stopped afterwards."""
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
    )
    ping = ["redis-cli", "-p", str(port), "ping"]
    wait_until(lambda: subprocess.run(ping, capture_output=True, text=True).stdout.strip() == "PONG")
    yield f"redis://127.0.0.1:{port}/0", process
    process.kill()
    process.wait()


def test_limit_is_shared_by_every_worker_and_replica_then_fails_open(serve, redis_url):
    url, redis_process = redis_url
    env = {"REDIS_URL": url, "RATE_LIMIT": "6/minute", "WEB_CONCURRENCY": "2"}
    replicas = [serve(env), serve(env)]
    assert all(replica.request("/health/ready")[0] == 200 for replica in replicas)

    statuses = [replicas[turn % 2].request("/")[0] for turn in range(8)]
    assert statuses == [200] * 6 + [429] * 2, "the two replicas did not share one count"
    status, headers, _ = replicas[0].request("/")
    assert status == 429 and headers["Content-Type"] == "application/problem+json"
    assert int(headers["Retry-After"]) > 0

    redis_process.kill()
    redis_process.wait()
    # Requests keep being served; readiness reports the lost dependency.
    assert all(replica.request("/health")[0] == 200 for replica in replicas)
    assert replicas[0].request("/health/ready")[0] == 503
    assert {replica.request("/")[0] for replica in replicas} <= {200, 429}
    assert all(replica.process.poll() is None for replica in replicas)
