"""Many kept-alive clients, and the descriptors they cost: nothing closed under a client, no worker crash.

Each test runs one worker at a lowered capacity (gunicorn's --worker-connections,
or a low open-files limit), so a few hundred clients stand for thousands.
"""

import contextlib
import os
import selectors
import signal
import socket
import sys
import time

import pytest

from railkit.cluster import limits
from railkit.settings import WORKER_CLASS

from .attacks import KeptAliveUsers
from .servers import message_starts, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.worker_class("gthread", "gevent")]

BIG_ANSWER_APP = "railkit_tests.big_answer_app:create_app()"
FAULTY = "railkit_tests.faulty_app:app"
# A burst of new connections, each asking once and staying open: enough that a worker's share counts.
CONNECTIONS = 150
BURST_SECONDS = 10


def _gunicorn(*options: str, limit_files: int | None = None, app: str = BIG_ANSWER_APP) -> list[str]:
    command = [sys.executable, "-m", "gunicorn", *options, app]
    if limit_files:
        command = ["prlimit", f"--nofile={limit_files}:{limit_files}", "--", *command]
    return command


def _died(server) -> list[dict]:
    return [log for log in server.logs if " died " in log.get("message", "")]


def _client_sockets(pid: int) -> int:
    """Sockets a worker holds (its listeners included)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
    return count


@pytest.mark.load
def test_more_clients_than_capacity_at_a_request_a_second_crash_nothing_and_lose_nothing(serve):
    """Once, accept() evicted a connection whose request was in the same batch of events: `not in deque`, exit 255."""
    capacity = 150
    server = serve({"WEB_CONCURRENCY": "1", "RATE_LIMIT": "off"}, command=_gunicorn(f"--worker-connections={capacity}"))
    (pid,) = server.wait_for_workers(1)
    outcome = KeptAliveUsers(server.port, users=400, interval=0.5, answer_timeout=20).run(10)
    print(f"400 users, capacity {capacity}: {outcome}; {outcome.closed_cleanly} closed with `Connection: close`")
    assert not _died(server), "a worker crashed"
    assert server.worker_pids() == {pid}
    # Nothing was closed under a request: every failure is a client still waiting to be accepted.
    assert not {"eof", "reset"} & set(outcome.failures), outcome
    assert outcome.answered > 1000, outcome
    # Each connection is counted out once: the worker never holds more than its capacity (plus its listeners).
    assert _client_sockets(pid) <= capacity + 4


def test_clients_between_requests_are_never_closed_under_them(serve):
    """Below capacity nothing idle for less than the keep-alive time is closed."""
    server = serve({"WEB_CONCURRENCY": "1", "RATE_LIMIT": "off"}, command=_gunicorn("--worker-connections=200"))
    outcome = KeptAliveUsers(server.port, users=150, interval=2.0).run(8)
    print(outcome)
    assert outcome.failures == {} and outcome.closed_cleanly == 0, outcome
    assert outcome.answered >= 150


def _kept_alive(port: int) -> tuple[socket.socket, bool]:
    """A connection that made one request; whether its answer said `Connection: close`."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(65536)
    return sock, b"\r\nConnection: close" in answer


def _silently_closed(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


@pytest.mark.worker_class("gevent")
def test_at_capacity_only_connections_idle_long_enough_make_room(serve):
    """A full worker closes kept-alive connections idle for IDLE_EVICTION_SECONDS, and only then takes a newcomer."""
    capacity = 40
    server = serve({"WEB_CONCURRENCY": "1", "RATE_LIMIT": "off"}, command=_gunicorn(f"--worker-connections={capacity}"))
    idle = [_kept_alive(server.port)[0]]
    started = time.monotonic()  # the first to idle: the first a newcomer may replace
    idle += [_kept_alive(server.port)[0] for _ in range(capacity - 1)]
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=limits.IDLE_EVICTION_SECONDS + 15) as late:
            late.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = late.recv(65536)
        waited = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 200"), answer
        # Not before the idle ones had idled long enough.
        assert waited >= limits.IDLE_EVICTION_SECONDS - 1, waited
        assert server.wait_for_log(message_starts("At capacity"))
    finally:
        for sock in idle:
            sock.close()


@pytest.mark.worker_class("gthread")
def test_at_capacity_kept_alive_connections_are_closed_in_an_answer_not_under_a_client(serve):
    """gthread keeps room for `threads` busy connections: past that, answers say `Connection: close`.

    Nothing closes silently, and a lingering close does not hold a newcomer back.
    """
    capacity = 40
    server = serve(
        {"WEB_CONCURRENCY": "1", "RATE_LIMIT": "off"},
        command=_gunicorn(f"--worker-connections={capacity}", "--threads=4"),
    )
    clients = [_kept_alive(server.port) for _ in range(capacity + 10)]
    try:
        announced = sum(closing for _, closing in clients)
        assert announced >= 1
        assert server.request("/health")[0] == 200  # a newcomer gets in
        assert not any(_silently_closed(sock) for sock, closing in clients if not closing)
    finally:
        for sock, _ in clients:
            sock.close()


def test_accept_out_of_descriptors_pauses_and_says_so_once(serve):
    """accept() failing with EMFILE once crashed the worker (gunicorn re-raises all but EAGAIN and ECONNABORTED)."""
    server = serve({"WEB_CONCURRENCY": "1", "RATE_LIMIT": "off"}, command=_gunicorn("--threads=4", limit_files=256))
    (pid,) = server.wait_for_workers(1)
    status, _, body = server.request("/hold-files?count=1000&spare=3", method="POST")
    assert status == 200 and b"error" in body, body  # the worker is out of descriptors
    clients = []
    try:
        for _ in range(20):
            clients.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
        if WORKER_CLASS == "gthread":
            paused = server.wait_for_log(message_starts("accept() failed"))
            assert paused["level"] == "warn"
        time.sleep(2)  # several pauses and retries (gevent's server pauses and retries on its own)
        assert len([log for log in server.logs if log.get("message", "").startswith("accept() failed")]) <= 1
        assert not _died(server) and server.worker_pids() == {pid}
    finally:
        for sock in clients:
            sock.close()
    # Descriptors back: the worker accepts again.
    wait_until(lambda: server.request("/release-files", method="POST", timeout=5)[0] == 200, message="files released")
    assert server.request("/health")[0] == 200
    assert server.worker_pids() == {pid}


def test_the_master_raises_the_soft_open_files_limit_to_the_hard_one(serve):
    server = serve({"WEB_CONCURRENCY": "1"}, command=["prlimit", "--nofile=1024:4096", "--", *_gunicorn()])
    (pid,) = server.wait_for_workers(1)
    line = server.wait_for_log(message_starts("Open-files limit raised from 1024 to 4096"))
    assert line["connections_per_worker"] == 4096 - limits.RESERVED_FILES
    with open(f"/proc/{pid}/limits") as worker_limits:
        (row,) = [row for row in worker_limits if row.startswith("Max open files")]
    assert row.split()[3:5] == ["4096", "4096"], row


def _burst(port: int, connections: int, seconds: float) -> int:
    """Open `connections` at once, each asking once and then staying open: how many were answered within `seconds`."""
    selector = selectors.DefaultSelector()
    held = []
    answered = 0
    try:
        for _ in range(connections):
            sock = socket.socket()
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.connect(("127.0.0.1", port))
            selector.register(sock, selectors.EVENT_WRITE, bytearray())
        deadline = time.monotonic() + seconds
        while selector.get_map() and time.monotonic() < deadline:
            for key, events in selector.select(0.1):
                sock, received = key.fileobj, key.data
                if events & selectors.EVENT_WRITE:
                    sock.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                    selector.modify(sock, selectors.EVENT_READ, received)
                    continue
                try:
                    chunk = sock.recv(65536)
                except OSError:
                    chunk = b""
                received += chunk
                if not chunk or b"\r\n\r\n" in received:
                    answered += received.startswith(b"HTTP/1.1 200")
                    selector.unregister(sock)
                    held.append(sock)  # kept open: its worker goes on counting it
    finally:
        for sock in [*held, *(key.fileobj for key in selector.get_map().values())]:
            sock.close()
        selector.close()
    return answered


def test_every_worker_takes_its_share_after_a_reload_more_workers_and_a_recycle(serve):
    """Each burst of new connections is answered whole, whatever slots the workers hold.

    The accept share was reckoned on the first WEB_CONCURRENCY board slots: after SIGHUP the new
    workers sat above them, beside dead workers' counts, and 34 of 150 new connections were answered.
    """
    server = serve({"WEB_CONCURRENCY": "2", "WORKER_MAX_MEMORY_MB": "64", "RATE_LIMIT": "off"}, app=FAULTY)
    first = server.wait_for_workers(2)
    answered = {"start": _burst(server.port, CONNECTIONS, BURST_SECONDS)}
    server.signal(signal.SIGHUP)
    wait_until(lambda: (pids := server.worker_pids()) and len(pids) == 2 and not pids & first)
    answered["SIGHUP"] = _burst(server.port, CONNECTIONS, BURST_SECONDS)
    server.signal(signal.SIGTTIN)
    server.wait_for_workers(3)
    answered["SIGTTIN"] = _burst(server.port, CONNECTIONS, BURST_SECONDS)
    # However the 9 requests are shared among 3 workers, one holds 90 MB or more: past 64 whatever its own size.
    assert [server.request("/leak?mb=30")[0] for _ in range(9)] == [200] * 9
    recycled = server.wait_for_log(lambda log: "memory limit" in log.get("cause", ""))
    server.wait_for_workers(3, without=recycled["worker_pid"])
    answered["recycle"] = _burst(server.port, CONNECTIONS, BURST_SECONDS)
    print(f"answered of {CONNECTIONS} within {BURST_SECONDS}s: {answered}")
    assert answered == dict.fromkeys(answered, CONNECTIONS), answered
