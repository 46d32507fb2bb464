"""The rate limit: shared through a real Redis, held per replica without it, and off when asked."""

import json
import shutil
import subprocess
import threading

import pytest
from limits import parse_many

from railkit import project
from railkit.plans import DEFAULT_PLAN, PLANS

from .fixture_app import create_app
from .servers import free_port, wait_until

needs_redis = pytest.mark.skipif(
    shutil.which("redis-server") is None,
    reason="needs redis-server on PATH: install it (e.g. `sudo apt-get install redis-server`), as CI does",
)


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


@pytest.mark.cluster
@needs_redis
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


@pytest.mark.parametrize("word", ["off", "0"])
def test_rate_limit_off_never_answers_429(monkeypatch, word):
    monkeypatch.setenv("RATE_LIMIT", word)
    client = create_app({"TESTING": True}).test_client()
    assert {client.get("/").status_code for _ in range(150)} == {200}


@pytest.mark.cluster
def test_without_redis_a_replica_holds_the_limit_not_workers_times_it(serve):
    server = serve({"RATE_LIMIT": "6/minute", "WEB_CONCURRENCY": "3", "REDIS_URL": None})
    server.wait_for_workers(3)
    # Every request on a new connection: they spread over the workers.
    answers = [server.request("/") for _ in range(30)]
    statuses = [status for status, _, _ in answers]
    assert set(statuses) == {200, 429}
    assert statuses.count(200) <= 6, "each of 3 workers holds a third of 6/minute"
    # Clients are shown the configured limit, never a worker's share of it.
    assert {headers["X-RateLimit-Limit"] for _, headers, _ in answers} == {"6"}
    refused = next(body for status, _, body in answers if status == 429)
    assert json.loads(refused)["detail"] == "Rate limit exceeded: 6 per 1 minute"


@pytest.mark.cluster
def test_the_master_alone_says_how_far_the_limit_reaches(serve):
    server = serve({"RATE_LIMIT": "60/minute", "WEB_CONCURRENCY": "2", "REDIS_URL": None})
    server.wait_for_workers(2)
    lines = [log for log in server.logs if "Rate limit" in log.get("message", "")]
    assert len(lines) == 1, lines
    assert lines[0]["pid"] == server.process.pid
    # What a client really gets without Redis: each worker's share, up to 2 workers' worth.
    assert "a client gets 30 to 60 requests through where the limit says 60" in lines[0]["message"]
    if project.HAS_REDIS:
        assert lines[0]["level"] == "warn" and "set REDIS_URL" in lines[0]["message"]
    else:
        # Generated without Redis: counting per replica was chosen, so it is no warning.
        assert lines[0]["level"] == "info" and "REDIS_URL" not in lines[0]["message"]


def test_headers_say_where_the_client_stands(monkeypatch):
    monkeypatch.setenv("RATE_LIMIT", "3/minute")
    client = create_app({"TESTING": True}).test_client()
    answers = [client.get("/").headers for _ in range(3)]
    assert [headers["X-RateLimit-Remaining"] for headers in answers] == ["2", "1", "0"]
    assert not [headers for headers in answers if "Retry-After" in headers], "Retry-After is for a 429 only"
    headers = client.get("/").headers
    assert headers["X-RateLimit-Limit"] == "3" and 0 < int(headers["Retry-After"]) <= 60
    assert "X-RateLimit-Limit" not in client.get("/health").headers, "health is not limited"


def test_testing_leaves_the_plans_limit_off_unless_a_test_asks(monkeypatch):
    """A test client makes hundreds of requests from one address: only a limit the test sets applies."""
    for name in ("RATE_LIMIT", "RAILWAY_PLAN"):
        monkeypatch.delenv(name, raising=False)
    client = create_app({"TESTING": True}).test_client()
    assert {client.get("/").status_code for _ in range(400)} == {200}
    asked = create_app({"TESTING": True, "RATELIMIT_DEFAULT": "2/minute"}).test_client()
    assert [asked.get("/").status_code for _ in range(3)] == [200, 200, 429]
    # Outside testing the plan's limit holds.
    plans_limit = str(parse_many(PLANS[DEFAULT_PLAN].rate_limit)[0].amount)
    assert create_app({}).test_client().get("/").headers["X-RateLimit-Limit"] == plans_limit


def test_counting_in_memory_starts_no_thread_per_request(monkeypatch):
    """limits' stock memory store starts a timer thread 10 ms after each count; under load, one every 10 ms."""
    monkeypatch.setenv("RATE_LIMIT", "1000/second")
    client = create_app({"TESTING": True}).test_client()

    def timers():
        return [thread for thread in threading.enumerate() if isinstance(thread, threading.Timer)]

    wait_until(lambda: not timers())  # the store's first timer, cancelled when it was built
    for _ in range(50):
        assert client.get("/").status_code == 200
        assert not timers()
