"""Defects a line-by-line reading found, each pinned by a test that failed before its fix.

D2: the memory store's sweep raced a read of the same key (KeyError, the request served uncounted).
D3: NaN was accepted when a run of 20 digits elsewhere switched parsers; -9223372036854775809 became a float.
A Redis outage doubled the retry delay once per failing thread, not once; after it, every request tried Redis again.
Runtime-folder cleanup judged folders of other PID namespaces by a pid that means nothing here.
"""

import json
import logging
import socket
import subprocess
import threading
import time

import pytest

from railkit.cluster import runtime
from railkit.cluster.board import Board
from railkit.web.ratelimit_memory import WorkerMemoryStorage
from railkit.web.ratelimit_redis import REDIS_RETRY_SECONDS

from .fixture_app import create_app
from .redis_server import needs_redis, redis_cli
from .servers import wait_until

# Enough threads and keys that expired keys are swept while other threads read them (2-3 KeyErrors in 4 s before).
THREADS = 8
KEYS = 16_384
ROUNDS = 3


def test_memory_store_sweeps_while_threads_count_without_error_and_counts_exactly():
    """D2: 8 threads count 16k keys each round, half of them expiring at once, while sweeps run between counts."""
    store = WorkerMemoryStorage()
    store.SWEEP_SECONDS = 0.001  # sweep as often as the threads count, not once a second
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def count():
        try:
            start.wait()
            for _ in range(ROUNDS):
                for number in range(KEYS):
                    # Odd keys expire at once: each is swept, read and recreated concurrently.
                    store.incr(f"key-{number}", 60 if number % 2 == 0 else 0.000001)
                    store.get(f"key-{number ^ 1}")
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=count) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert {store.get(f"key-{number}") for number in range(0, KEYS, 2)} == {THREADS * ROUNDS}


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": NaN}',
        b'{"a": NaN, "id": "12345678901234567890"}',
        b'{"a": Infinity, "n": 123456789012345678901234567890}',
        b'{"a": -Infinity, "id": "12345678901234567890"}',
        b'{"n": 1e400, "id": "12345678901234567890"}',
    ],
    ids=["nan", "nan-beside-20-digits", "infinity-beside-a-big-integer", "minus-infinity", "overflowing-float"],
)
def test_json_never_accepts_nan_or_infinity_whatever_else_the_body_holds(client, body):
    """D3: the standard library's parser accepts NaN; whatever parses the body, it is refused."""
    response = client.post("/echo", data=body, content_type="application/json")
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"


@pytest.mark.parametrize(
    "number",
    [-9223372036854775809, -9223372036854775808, 18446744073709551615, 18446744073709551616, -(10**30), 10**40],
)
def test_integers_beyond_64_bits_are_parsed_exactly(client, number):
    """D3: 19-digit integers below the int64 minimum came back as floats."""
    body = b'{"n": %d, "list": [%d]}' % (number, number)
    response = client.post("/echo", data=body, content_type="application/json")
    assert response.status_code == 200
    received = json.loads(response.data)["received"]
    assert received == {"n": number, "list": [number]} and type(received["n"]) is int


def test_an_integer_past_pythons_digit_limit_is_refused_every_time(client):
    body = b'{"n": ' + b"9" * 5000 + b"}"
    statuses = {client.post("/echo", data=body, content_type="application/json").status_code for _ in range(3)}
    assert statuses == {400}


@pytest.fixture
def black_hole():
    """A TCP port that accepts connections (the kernel's backlog) and never answers: Redis hanging."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    listener.close()


def test_one_redis_outage_doubles_the_retry_delay_once_not_once_per_thread(monkeypatch, black_hole, caplog):
    """16 requests fail on the same hanging Redis together: one back-off step, one warning."""
    monkeypatch.setenv("RATE_LIMIT", "100/minute")
    monkeypatch.setenv("REDIS_URL", black_hole)
    app = create_app({"TESTING": True})
    limiter = app.extensions["rate_limiter"]
    caplog.set_level(logging.WARNING, logger="railkit.web.ratelimit_redis")
    together = threading.Barrier(16)
    statuses = []

    def request():
        client = app.test_client()
        together.wait()
        statuses.append(client.get("/").status_code)

    threads = [threading.Thread(target=request) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 16, "requests are served while Redis hangs"
    assert limiter.redis.retry == REDIS_RETRY_SECONDS * 2
    outages = [record for record in caplog.records if "does not answer" in record.getMessage()]
    assert len(outages) == 1, [record.getMessage() for record in outages]


@needs_redis
def test_after_an_outage_one_request_at_a_time_tries_redis_again(monkeypatch, tmp_path, caplog):
    """A Redis still hanging after the back-off meets one trial request, not all of them; one that is back counts."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)  # accepts into the kernel's backlog, never answers
    port = listener.getsockname()[1]
    monkeypatch.setenv("RATE_LIMIT", "100/minute")
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{port}/0")
    caplog.set_level(logging.WARNING)
    app = create_app({"TESTING": True})
    counter = app.extensions["rate_limiter"].redis
    assert app.test_client().get("/").status_code == 200  # the outage is declared
    wait_until(lambda: time.monotonic() >= counter.down_until, message="the back-off")
    together = threading.Barrier(16)
    statuses = []

    def request():
        client = app.test_client()
        together.wait()
        statuses.append(client.get("/").status_code)

    threads = [threading.Thread(target=request) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 16
    listener.setblocking(False)
    tried = 0
    while True:
        try:
            listener.accept()[0].close()
        except BlockingIOError:
            break
        tried += 1
    listener.close()
    assert tried == 2, "the first request, then one trial, reached the hanging Redis"
    # Redis is back on that port: the next trial finds it, and requests count there again.
    redis = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
    )
    try:
        client = app.test_client()
        wait_until(lambda: client.get("/") and not counter.down, message="Redis counting again")
        assert redis_cli(port, "get", "LIMITS:LIMITER/127.0.0.1/fixture.index/100/1/minute") == ["1"]
        messages = [record.getMessage() for record in caplog.records if record.name.startswith("railkit.web")]
        assert [message for message in messages if "Redis" in message][-1] == (
            "Rate limit: Redis answers again; counting there"
        )
    finally:
        redis.kill()
        redis.wait()


def _dead_masters_folder(base, name: str):
    """A runtime folder named `name` whose board names a master pid that is not running here."""
    folder = base / name
    folder.mkdir(mode=0o700)
    board = Board.create(folder)
    board.set_master(2**22 + 12345, 1)  # above any pid_max: dead in this namespace
    return folder


def test_cleanup_judges_only_folders_of_its_own_pid_namespace(tmp_path):
    """A shared base folder: another container's master looks dead from here, and its folder must stay."""
    own = _dead_masters_folder(tmp_path, f"{runtime.PREFIX}8000-{runtime.pid_namespace()}-left")
    foreign = _dead_masters_folder(tmp_path, f"{runtime.PREFIX}8000-pidns1-alive-elsewhere")
    made = runtime.make_private_folder(8001, base=tmp_path)
    assert not own.exists(), "a dead master of this namespace leaves its folder to the next start"
    assert foreign.exists(), "another namespace's master was judged by a pid that means nothing here"
    assert made.name.startswith(f"{runtime.PREFIX}8001-{runtime.pid_namespace()}-")
