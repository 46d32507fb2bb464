"""One answer per request, and threads no client can pin: unread bodies, `100 Continue`, slow readers, chunked bodies.

A declared body the app did not read was drained for up to 20 s on the
request's thread, then answered a second time when the drain failed; a
client that read nothing of a large answer held its thread for as long as
it liked; every chunked body queued as if it were large.
"""

import contextlib
import json
import re
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from railkit.cluster import limits

from .attacks import SlowReaders, flood, probe_health
from .servers import SUITE

pytestmark = pytest.mark.cluster

BIG_ANSWER_APP = "railkit_tests.big_answer_app:create_app()"
DOWNLOAD_APP = "railkit_tests.download_app:create_app()"
AVAILABILITY = 0.99
ATTACK_SECONDS = 10


def _statuses(answer: bytes) -> list[bytes]:
    """Every status line in what the server sent (an answer's body may run into the next one's)."""
    return re.findall(rb"HTTP/1\.1 \d{3} [^\r\n]*(?=\r\n)", answer)


def _exchange(server, data: bytes, timeout: float = limits.LINGER_SECONDS + 5) -> tuple[bytes, float]:
    started = time.monotonic()
    answer = server.exchange(data, timeout=timeout)
    return answer, time.monotonic() - started


def test_a_declared_body_the_app_does_not_read_closes_the_connection_with_one_answer(server):
    answer, took = _exchange(server, b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
    assert _statuses(answer) == [b"HTTP/1.1 200 OK"], answer[:500]
    assert b"\r\nConnection: close\r\n" in answer
    # Closed by the server (lingering at most LINGER_SECONDS), not waited on for the 20 s body deadline.
    assert took < limits.LINGER_SECONDS + 4, took


@pytest.mark.worker_class("gthread", "gevent")  # sync closes every connection after its answer
def test_a_small_unread_body_already_here_keeps_the_connection(server):
    request = b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
    answer, _ = _exchange(server, request + b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert _statuses(answer) == [b"HTTP/1.1 200 OK"] * 2, answer[:500]


def test_an_oversized_chunk_the_app_does_not_read_gets_one_answer(server):
    answer, _ = _exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFF\r\nab")
    assert len(_statuses(answer)) == 1, answer[:500]


def test_no_100_continue_for_a_body_that_is_refused(server):
    head = (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"
        b"Content-Length: 50000000\r\n\r\n"
    )
    answer, _ = _exchange(server, head)
    assert _statuses(answer) == [b"HTTP/1.1 413 REQUEST ENTITY TOO LARGE"], answer[:500]
    assert b"100 Continue" not in answer


def test_100_continue_when_the_app_reads_the_body(server):
    body = b'{"a": 1}'
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        assert sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert _statuses(answer) == [b"HTTP/1.1 200 OK"], answer[:500]
    assert b'{"received":{"a":1}}' in answer


@pytest.mark.worker_class("gthread", "gevent")
@pytest.mark.load
def test_unsent_bodies_under_the_large_body_gate_do_not_starve_health(serve):
    """300 connections declaring 1,048,000 bytes and sending none held /health at 10%."""
    server = serve({"RATE_LIMIT": "off"})
    unsent = b"Content-Length: 1048000\r\n\r\n"
    with ThreadPoolExecutor(2) as pool:
        attacks = [
            pool.submit(flood, server.port, b"GET /health HTTP/1.1\r\nHost: a\r\n" + unsent, ATTACK_SECONDS, 150),
            pool.submit(flood, server.port, b"POST /echo HTTP/1.1\r\nHost: a\r\n" + unsent, ATTACK_SECONDS, 150),
        ]
        time.sleep(1)
        availability = probe_health(server.port, ATTACK_SECONDS - 2)
        for attack in attacks:
            attack.result()
    print(f"unsent bodies: {availability}")
    assert availability.share >= AVAILABILITY, str(availability)


@pytest.mark.load
@pytest.mark.worker_class("gthread", "gevent")
def test_slow_readers_of_large_answers_do_not_starve_health(serve):
    """Clients that never read an 8 MB answer, 20 new ones a second, held every thread of most workers."""
    server = serve({"RATE_LIMIT": "off"}, app=BIG_ANSWER_APP)
    with SlowReaders(server.port, per_second=20) as readers:
        time.sleep(2)
        availability = probe_health(server.port, ATTACK_SECONDS, until=lambda: readers.opened >= 100)
    print(f"{readers.opened} slow readers: {availability}")
    assert readers.opened >= 100
    assert availability.share >= AVAILABILITY, str(availability)
    # A granian worker keeps what the readers did not take in its memory: its limit recycles it, on purpose.
    assert not [log for log in server.logs if log.get("cause") and log["level"] != "info"], "a worker crashed"


def test_a_client_that_reads_nothing_is_cut_after_the_write_deadline(serve):
    command = [sys.executable, "-m", "gunicorn", "-c", str(SUITE / "short_write_deadline.conf.py"), BIG_ANSWER_APP]
    server = serve({"WEB_CONCURRENCY": "1"}, command=command)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(b"GET /big?mb=8 HTTP/1.1\r\nHost: x\r\n\r\n")
        server.wait_for_log(lambda log: "read nothing for 2s" in log.get("message", ""), timeout=20)
        sock.settimeout(5)
        received = 0
        try:
            while chunk := sock.recv(65536):
                received += len(chunk)
        except ConnectionResetError:
            pass
    assert received < 8 * 2**20, "the whole answer was sent: nothing cut the client"


@pytest.mark.parametrize("path", ["/big?mb=8", "/file?mb=64"], ids=["bytes", "file"])
def test_a_client_that_reads_nothing_of_a_file_is_cut_after_the_write_deadline_too(serve, path):
    """An answer the client does not read is cut at the deadline, bytes or a file.

    gunicorn sends a file (Flask's send_file) with sock.sendfile, which the write deadline did not cover:
    a client that never read held its thread for as long as it stayed connected.
    """
    command = [sys.executable, "-m", "gunicorn", "-c", str(SUITE / "short_write_deadline.conf.py"), DOWNLOAD_APP]
    server = serve({"WEB_CONCURRENCY": "1"}, command=command)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
        server.wait_for_log(lambda log: "read nothing for 2s" in log.get("message", ""), timeout=20)
        sock.settimeout(5)
        received = 0
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                received += len(chunk)
    assert received < 8 * 2**20, "the whole answer was sent: nothing cut the client"
    assert server.request("/health")[0] == 200


def test_a_file_is_sent_whole_or_in_the_range_asked_for(serve):
    server = serve({"WEB_CONCURRENCY": "1"}, app=DOWNLOAD_APP)
    status, _, body = server.request("/file?mb=8")
    assert status == 200 and body == b"x" * 8 * 2**20
    status, headers, body = server.request("/file?mb=8", headers={"Range": "bytes=1000-1999"})
    assert status == 206 and headers["Content-Range"] == f"bytes 1000-1999/{8 * 2**20}" and body == b"x" * 1000


@pytest.mark.load
@pytest.mark.worker_class("gthread", "gevent")
def test_slow_readers_of_files_do_not_starve_health(serve):
    """File downloads nobody reads count among the stalled writers: past the worker's share, the longest is cut."""
    server = serve({"RATE_LIMIT": "off"}, app=DOWNLOAD_APP)
    assert server.request("/file?mb=64")[0] == 200  # each worker makes its file on its first download
    with SlowReaders(server.port, path="/file?mb=64", per_second=20) as readers:
        time.sleep(2)
        availability = probe_health(server.port, ATTACK_SECONDS, until=lambda: readers.opened >= 100)
    print(f"{readers.opened} slow readers of files: {availability}")
    assert readers.opened >= 100
    assert availability.share >= AVAILABILITY, str(availability)
    assert server.wait_for_log(lambda log: "others stalled too" in log.get("message", ""))


def _slow_with_empty_chunked_body(port: int) -> dict:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(
            b"POST /slow?seconds=2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            b"0\r\n\r\n"
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return json.loads(answer.partition(b"\r\n\r\n")[2])


@pytest.mark.worker_class("gthread", "gevent")
def test_chunked_bodies_are_counted_by_their_bytes_not_presumed_large(serve):
    """D4: 8 slow requests with an empty chunked body ran 3 at a time (the large bodies' admission)."""
    server = serve({"WEB_CONCURRENCY": "1", "RATE_LIMIT": "off"}, app=BIG_ANSWER_APP)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: _slow_with_empty_chunked_body(server.port), range(8)))
    assert max(answer["most_at_once"] for answer in answers) >= 4, answers


@pytest.mark.worker_class("gthread", "gevent")
def test_a_chunked_body_past_the_large_size_is_admitted_and_read(serve):
    server = serve({"WEB_CONCURRENCY": "1", "RATE_LIMIT": "off"})
    body = json.dumps({"a": "x" * (2 * limits.LARGE_BODY_BYTES)}).encode()
    chunks = b"".join(b"%X\r\n%s\r\n" % (len(part), part) for part in (body[:65536], body[65536:]))
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n" + chunks + b"0\r\n\r\n"
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert _statuses(answer) == [b"HTTP/1.1 200 OK"], answer[:300]
