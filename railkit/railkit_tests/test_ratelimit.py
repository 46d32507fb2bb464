"""The rate limit: shared through a real Redis, held per replica without it, a view's own, and off when asked."""

import json
import logging
import socket
import subprocess
import threading
import time

import pytest
from limits import parse_many

import railkit
from railkit import project
from railkit.plans import DEFAULT_PLAN, PLANS

from .fixture_app import create_app
from .redis_server import needs_redis, running_redis, start_redis
from .servers import free_port, wait_until


@pytest.fixture
def redis_url(tmp_path):
    """A private redis-server on a free loopback port, stopped afterwards: (its URL, its process)."""
    yield from running_redis(tmp_path)


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
    """A test client makes hundreds of requests from one address: only a default the test sets applies."""
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


@pytest.fixture
def limited(monkeypatch):
    """A test client of the app whose views declare their own limits, with a default of 5 a minute."""
    for name in ("REDIS_URL", "RATE_LIMIT"):
        monkeypatch.delenv(name, raising=False)
    from .limited_app import create_app as create_limited_app

    return create_limited_app({"TESTING": True, "RATELIMIT_DEFAULT": "5/minute"}).test_client()


def test_a_views_own_limit_replaces_the_default_and_the_headers_follow_it(limited):
    login = [limited.get("/login") for _ in range(4)]
    assert [answer.status_code for answer in login] == [200, 200, 200, 429]
    assert {answer.headers["X-RateLimit-Limit"] for answer in login} == {"3"}
    assert [answer.headers["X-RateLimit-Remaining"] for answer in login] == ["2", "1", "0", "0"]
    assert json.loads(login[-1].data)["detail"] == "Rate limit exceeded: 3 per 1 minute"
    assert 0 < int(login[-1].headers["Retry-After"]) <= 60
    assert not [answer for answer in login[:3] if "Retry-After" in answer.headers]
    # The default is another count, and /login took none of it.
    default = [limited.get("/") for _ in range(6)]
    assert [answer.status_code for answer in default] == [200] * 5 + [429]
    assert {answer.headers["X-RateLimit-Limit"] for answer in default} == {"5"}


def test_the_decorators_work_above_or_below_the_route_decorator(limited):
    search = [limited.get("/search") for _ in range(3)]
    assert [answer.status_code for answer in search] == [200, 200, 429], "@railkit.limit above @bp.get"
    assert search[0].headers["X-RateLimit-Limit"] == "2", "the first of '2/minute;50/hour' is shown"
    for path in ("/ping", "/pong", "/open/status", "/health"):
        answers = [limited.get(path) for _ in range(8)]
        assert {answer.status_code for answer in answers} == {200}, path
        assert not [answer for answer in answers if "X-RateLimit-Limit" in answer.headers], path


def test_a_views_own_limit_holds_with_the_default_off(monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("RATE_LIMIT", "off")
    from .limited_app import create_app as create_limited_app

    client = create_limited_app({"TESTING": True}).test_client()
    assert {client.get("/").status_code for _ in range(30)} == {200}
    assert [client.get("/login").status_code for _ in range(4)] == [200, 200, 200, 429]


@pytest.mark.parametrize("spec", ["10/minuet", "ten/minute", "0/minute", "", "10 a minute", "5/minute;"])
def test_a_bad_limit_is_refused_when_the_view_is_decorated(spec):
    with pytest.raises(ValueError, match=r"is not a rate limit: use a count per period, e\.g\. '10/minute'"):
        railkit.limit(spec)


def test_the_decorators_refuse_what_they_cannot_mean():
    def view():
        return "x"

    with pytest.raises(TypeError, match=r"takes the limit first: @railkit.limit\(\"10/minute\"\)"):
        railkit.limit(view)  # @railkit.limit without its limit
    railkit.exempt(view)
    with pytest.raises(TypeError, match="contradict each other"):
        railkit.limit("1/minute")(view)

    def other():
        return "y"

    railkit.limit("1/minute")(other)
    with pytest.raises(TypeError, match="contradict each other"):
        railkit.exempt(other)


@pytest.mark.cluster
@needs_redis
def test_two_workers_share_a_views_own_count_in_redis(serve, redis_url):
    url, _ = redis_url
    server = serve(
        {"REDIS_URL": url, "RATE_LIMIT": "100/minute", "WEB_CONCURRENCY": "2"},
        app="railkit_tests.limited_app:create_app()",
    )
    server.wait_for_workers(2)
    answers = []

    def both_workers_answered():
        status, headers, _ = server.request("/login")
        answers.append((status, headers["X-Worker-Pid"]))
        return len(answers) >= 5 and len({pid for _, pid in answers}) == 2

    wait_until(both_workers_answered, message="answers from both workers")
    assert [status for status, _ in answers] == [200] * 3 + [429] * (len(answers) - 3)
    port = url.rsplit(":", 1)[1].split("/")[0]
    keys = subprocess.run(["redis-cli", "-p", port, "keys", "*"], capture_output=True, text=True).stdout.split()
    # The view's own count, apart from any default count of the same route.
    assert keys == ["LIMITS:LIMITER/127.0.0.1/limited.login/route/3/1/minute"]


@needs_redis
def test_a_wrong_password_is_an_error_logged_once_with_its_traceback_and_readiness_fails(tmp_path, monkeypatch, caplog):
    from railkit.web.ratelimit import redis_check

    port, process = start_redis(tmp_path, "--requirepass", "the-right-one")
    try:
        monkeypatch.setenv("REDIS_URL", f"redis://:a-wrong-one@127.0.0.1:{port}/0")
        monkeypatch.setenv("RATE_LIMIT", "100/minute")
        caplog.set_level(logging.WARNING)
        app = create_app({"TESTING": True})
        client = app.test_client()
        counter = app.extensions["rate_limiter"].redis
        # Requests keep being served (counted in memory) while trial after trial meets the same error.
        statuses = []

        def tried_twice():
            statuses.append(client.get("/").status_code)
            return counter.generation >= 2

        wait_until(tried_twice, message="two trials of Redis")
        assert set(statuses) == {200}
        records = [record for record in caplog.records if record.name.startswith("railkit.web.ratelimit")]
        errors = [record for record in records if record.levelno == logging.ERROR]
        assert len(errors) == 1, [record.getMessage() for record in errors]
        assert errors[0].exc_info is not None and "AuthenticationError" in errors[0].getMessage()
        assert not [record for record in records if "does not answer" in record.getMessage()], "no outage"
        check = redis_check(app)
        assert check["status"] == "fail" and "AuthenticationError" in check["output"], check
        assert client.get("/health/ready").status_code == 503
    finally:
        process.kill()
        process.wait()


def test_redis_refusing_connections_is_an_outage_warned_without_a_traceback(monkeypatch, caplog):
    from railkit.web.ratelimit import redis_check

    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    monkeypatch.setenv("RATE_LIMIT", "100/minute")
    caplog.set_level(logging.WARNING)
    app = create_app({"TESTING": True})
    assert app.test_client().get("/").status_code == 200
    records = [record for record in caplog.records if record.name.startswith("railkit.web.ratelimit")]
    assert [(record.levelno, record.exc_info) for record in records] == [(logging.WARNING, None)]
    assert "does not answer (ConnectionError" in records[0].getMessage()
    check = redis_check(app)
    assert check["status"] == "fail" and check["output"].startswith("Redis does not answer"), check


def test_a_redis_taking_no_connection_is_an_outage_once_the_probe_agrees(monkeypatch, caplog):
    """Its backlog full, the kernel drops our connects: the connect's timeout, then the blocking probe, say so."""
    with socket.socket() as full, socket.socket() as queued:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        queued.connect(full.getsockname())  # the one connection its backlog holds: later ones are dropped
        monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{full.getsockname()[1]}/0")
        monkeypatch.setenv("RATE_LIMIT", "100/minute")
        caplog.set_level(logging.WARNING)
        app = create_app({"TESTING": True})
        assert app.test_client().get("/").status_code == 200
    records = [record for record in caplog.records if record.name.startswith("railkit.web.ratelimit")]
    assert [(record.levelno, record.exc_info) for record in records] == [(logging.WARNING, None)]
    assert "does not answer (TimeoutError: Timeout connecting to server)" in records[0].getMessage()


@needs_redis
def test_the_kernel_clock_probe_tells_redis_from_silence(redis_url):
    from railkit.web.ratelimit_redis import answers_within

    url, _ = redis_url
    assert answers_within(url, 2)  # a real server, on a machine that may be busy
    with socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(8)  # accepts (the kernel's backlog), never answers
        started = time.monotonic()
        assert not answers_within(f"redis://127.0.0.1:{black_hole.getsockname()[1]}/0", 0.25)
        assert time.monotonic() - started < 5  # a wait for an answer would last the whole test
    assert not answers_within(f"redis://127.0.0.1:{free_port()}/0", 0.25)


def test_a_spray_of_client_addresses_keeps_the_memory_store_bounded_and_abusers_counted():
    """One key per client and window: a spray of source addresses pushes out only the clients quiet longest."""
    from railkit.web.ratelimit_memory import WorkerMemoryStorage

    store = WorkerMemoryStorage(max_keys=1000)
    abuser = "LIMITER/203.0.113.7/fixture.index/5/1/minute"
    sprayed = [f"LIMITER/10.{n >> 16}.{(n >> 8) & 255}.{n & 255}/fixture.index/5/1/minute" for n in range(20_000)]
    for number, key in enumerate(sprayed):
        store.hit(key, 60)
        if number % 100 == 0:
            store.hit(abuser, 60)
    assert len(store) == 1000
    assert store.get(abuser) == 200, "a client that keeps sending is never the one pushed out"
    assert store.get(sprayed[0]) == 0 and store.get(sprayed[-1]) == 1
