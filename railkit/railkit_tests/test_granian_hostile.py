"""Hostile clients against granian under the platform: what it withstands, and where its answers differ from gunicorn's.

The attacks are attacks.py's, as against gunicorn (test_hostile.py,
test_answers.py, test_connections.py, test_memory.py); the shared ones run
on both servers. The README's table of the two servers quotes these tests.
"""

import os
import signal
import socket
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from .attacks import (
    RAILWAY_LINES_PER_SECOND,
    HostileConnections,
    KeptAliveUsers,
    flood,
    probe_health,
    stdout_lines_per_second,
)
from .servers import wait_until

pytestmark = [pytest.mark.server("granian"), pytest.mark.cluster]

AVAILABILITY = 0.99
ATTACK_SECONDS = 10
# Railway keeps this many stdout lines per second per replica.


def _died(server) -> list[dict]:
    return [log for log in server.logs if " died " in log.get("message", "")]


def _status_line(answer: bytes) -> bytes:
    return answer.partition(b"\r\n")[0]


@pytest.mark.worker_class("gthread")  # a sync worker has one thread: a body it waits on holds it (the README)
def test_unsent_bodies_leave_half_of_a_workers_threads_to_health(serve):
    """granian's body reads block with no deadline: 60 unsent bodies took all of one worker's threads (0% /health)."""
    server = serve({"WEB_CONCURRENCY": "1", "RATE_LIMIT": "off"})
    unsent = b"Content-Type: application/json\r\nContent-Length: 1048000\r\n\r\n"
    with ThreadPoolExecutor(2) as pool:
        attacks = [
            pool.submit(flood, server.port, b"POST /echo HTTP/1.1\r\nHost: a\r\n" + unsent, ATTACK_SECONDS, 150),
            pool.submit(flood, server.port, b"GET /health HTTP/1.1\r\nHost: a\r\n" + unsent, ATTACK_SECONDS, 150),
        ]
        time.sleep(1)
        availability = probe_health(server.port, ATTACK_SECONDS - 2)
        answered = [attack.result() for attack in attacks]
    print(f"unsent bodies, one worker: {availability}; answers {answered}")
    assert availability.share >= AVAILABILITY, str(availability)
    assert not _died(server)


@pytest.mark.worker_class("gthread")
def test_a_body_past_half_the_threads_is_refused_at_once_with_a_problem(serve):
    """The readers are all taken: the next body is answered 429 at once, as a problem, with its request id."""
    server = serve({"WEB_CONCURRENCY": "1", "RATE_LIMIT": "off"})
    threads = server.wait_for_log(lambda log: "threads" in log)["threads"]
    held = []
    try:
        for _ in range(max(1, threads // 2)):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(
                b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n{"
            )
            held.append(sock)
        # Once every held request has reached its body read (on a busy machine, not at once), the next is refused.
        deadline = time.monotonic() + 10
        while True:
            started = time.monotonic()
            status, headers, body = server.request(
                "/echo", "POST", b'{"a": 1}', {"Content-Type": "application/json", "X-Request-ID": "refused-1"}
            )
            took = time.monotonic() - started
            if status != 200 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        for sock in held:
            sock.close()
    assert status == 429, body
    assert headers["Content-Type"] == "application/problem+json"
    assert b"refused-1" in body
    assert took < 2, took
    assert server.request("/health")[0] == 200


@pytest.mark.worker_class("gthread")
def test_slow_and_silent_clients_do_not_starve_health(serve):
    """200 heads trickling a byte every 3 s and 500 silent connections cost granian no Python thread."""
    server = serve()
    with HostileConnections(server.port, slow=200, silent=500) as attack:
        wait_until(lambda: attack.open["silent"] >= 500, message="the attack's connections")
        availability = probe_health(server.port, ATTACK_SECONDS)
    print(f"granian: {availability} under 200 slow + 500 silent; cut off by the server: {attack.cut_off}")
    assert availability.share >= AVAILABILITY, str(availability)
    assert not _died(server)


def test_malformed_heads_get_granians_empty_answers_and_nothing_dies(serve):
    """What hyper refuses before the app (a broken request line, over 100 headers) it answers itself, bodiless."""
    server = serve({"WEB_CONCURRENCY": "1"})
    many_headers = b"".join(b"X-H%d: v\r\n" % number for number in range(200))
    answers = {
        "malformed": server.exchange(b"NOT-HTTP\r\n\r\n"),
        "too many headers": server.exchange(b"GET / HTTP/1.1\r\nHost: x\r\n" + many_headers + b"\r\n"),
    }
    assert _status_line(answers["malformed"]) == b"HTTP/1.1 400 Bad Request", answers
    assert _status_line(answers["too many headers"]) == b"HTTP/1.1 431 Request Header Fields Too Large", answers
    assert all(b"\r\ncontent-length: 0\r\n" in answer for answer in answers.values()), answers
    assert server.request("/health")[0] == 200
    assert not _died(server)


@pytest.mark.load
def test_a_flood_of_malformed_and_valid_requests_stays_within_railways_rate(serve):
    """granian logs nothing per malformed request; the access log keeps its budget; lifecycle lines all come out."""
    seconds = 4
    server = serve({"WEB_CONCURRENCY": "2", "ACCESS_LOG": "all", "RATE_LIMIT": "off"})
    victim = sorted(server.wait_for_workers(2))[0]
    with ThreadPoolExecutor(3) as pool:
        rates = pool.submit(stdout_lines_per_second, server, seconds + 2)
        invalid = pool.submit(flood, server.port, b"NOT-HTTP\r\n\r\n", seconds)
        valid = pool.submit(flood, server.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", seconds)
        time.sleep(seconds / 2)
        os.kill(victim, signal.SIGKILL)
        sent_invalid, sent_valid = invalid.result(), valid.result()
        per_second = rates.result()
    print(f"{sent_invalid} malformed + {sent_valid} valid requests in {seconds}s; stdout lines/s: {per_second}")
    assert sent_invalid >= 50 and sent_valid >= 50, "the flood was too small to test anything"
    assert max(per_second) <= RAILWAY_LINES_PER_SECOND, per_second
    server.wait_for_log(lambda log: log.get("worker_pid") == victim and " died " in log["message"])
    server.wait_for_workers(2, without=victim)
    loggers = Counter(log.get("logger") for log in server.logs)
    assert sum(count for logger, count in loggers.items() if str(logger).startswith("_granian")) < 20, loggers


@pytest.mark.worker_class("gthread")
@pytest.mark.load
def test_five_thousand_kept_alive_users_through_a_sighup_that_replaces_every_worker(serve):
    """Issue 27's crowd, 5,000 clients each asking every 5 s, while both workers are replaced.

    A stopping worker closes its idle kept-alive connections, and a client
    sending on one at that instant meets an EOF: HTTP/1.1's own race, which a
    client retries. granian closes them the moment it stops; the platform
    first gives them RETIRE_NOTICE_SECONDS of answers saying `Connection:
    close` (as gunicorn's gthread does): 1 to 7 failures in 20,000 requests
    over several runs, 4 in one run without the notice, 1 for gunicorn in one
    run of this test. On cores saturated by other work (the template's CI runs
    several suites side by side) granian's stop takes longer and 144 to 569 of
    about 18,000 met it (0.8 to 3%), every one an EOF before any answer: the
    project README's table says so, and gunicorn stays the choice for it.
    """
    server = serve({"WEB_CONCURRENCY": "2", "RATE_LIMIT": "off"})
    before = server.wait_for_workers(2)
    users = KeptAliveUsers(server.port, users=5000, interval=5.0, answer_timeout=20)
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(users.run, 20, opening_seconds=5)
        time.sleep(10)
        server.signal(signal.SIGHUP)
        outcome = running.result()
    print(f"granian, 5,000 users through a SIGHUP: {outcome}; {outcome.closed_cleanly} closed with Connection: close")
    assert not server.worker_pids() & before, "the workers were not replaced"
    assert not _died(server)
    assert outcome.closed_cleanly > 0, "the retiring workers' answers did not close their connections"
    assert set(outcome.failures) <= {"eof"}, outcome  # the race a client retries, never a wrong or partial answer
    assert outcome.first_try >= 0.95, outcome


@pytest.mark.worker_class("gthread")
def test_a_slow_upload_holds_one_reader_and_is_served_when_it_ends(serve):
    """granian has no body deadline (gunicorn answers 408 after BODY_TIMEOUT): a slow honest upload is served."""
    server = serve({"WEB_CONCURRENCY": "1", "REQUEST_TIMEOUT": "2"})
    body = b'{"name": "' + b"x" * 40 + b'"}'
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        for start in range(0, len(body), 10):
            sock.sendall(body[start : start + 10])
            assert server.request("/health", timeout=10)[0] == 200  # served meanwhile
            time.sleep(0.6)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert not [log for log in server.logs if "aborting it" in log.get("message", "")]


def test_a_client_still_sending_a_body_refused_for_its_size_reads_its_413(serve):
    """granian closes a connection whose body was not read: a 20 MB upload refused unread ended in a reset, 20 of 20.

    The worker reads and drops a body refused for its size once the 413 is out, as gunicorn lingers.
    """
    server = serve({"WEB_CONCURRENCY": "1", "RAILWAY_PLAN": "free", "RATE_LIMIT": "off"})
    body = b"{" + b" " * (20 * 2**20) + b"}"  # the free plan takes 1 MB
    statuses = [server.request("/echo", "POST", body, {"Content-Type": "application/json"})[0] for _ in range(5)]
    assert statuses == [413] * 5
    assert server.request("/health")[0] == 200
