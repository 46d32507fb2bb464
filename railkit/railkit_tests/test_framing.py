"""Malformed bodies over real sockets: broken chunked framing, endless chunks, JSON too deep to answer."""

import json

import pytest

from railkit.web.bodies import MAX_JSON_DEPTH

pytestmark = pytest.mark.cluster

PROBLEM = b"application/problem+json"
CHUNKED_HEAD = (
    b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


@pytest.mark.parametrize(
    "body",
    [b"zz\r\n{}\r\n0\r\n\r\n", b"2\r\n{}XX0\r\n\r\n", b"2;;=;\r\n{}\r\n0\r\n\r\n", b"-2\r\n{}\r\n0\r\n\r\n"],
    ids=["invalid-size", "missing-crlf", "garbage-extension", "negative-size"],
)
def test_broken_chunked_framing_is_a_400_problem_without_traceback(server, body):
    answer = server.exchange(CHUNKED_HEAD + body)
    assert _status(answer) == 400, answer
    assert PROBLEM in answer
    # Its access line follows any traceback the request logged.
    request_id = json.loads(answer.partition(b"\r\n\r\n")[2])["request_id"]
    server.wait_for_log(lambda log: log.get("request_id") == request_id and "status" in log, message="its access line")
    assert not [log for log in server.logs if "exc_info" in log], "a traceback was logged"
    assert server.request("/health")[0] == 200


def test_chunk_size_beyond_the_body_limit_is_a_413_at_once(server):
    """The chunk is never sent: a server waiting for it would answer 408 at the body deadline, not 413."""
    answer = server.exchange(CHUNKED_HEAD + b"%x\r\n{" % 2**80, timeout=10)
    assert _status(answer) == 413, answer
    assert PROBLEM in answer


def test_a_valid_chunked_body_is_served(server):
    body = json.dumps({"a": 1}).encode()
    answer = server.exchange(CHUNKED_HEAD + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body), timeout=5)
    assert _status(answer) == 200, answer
    assert json.loads(answer.partition(b"\r\n\r\n")[2]) == {"received": {"a": 1}}


def _nested(depth: int) -> bytes:
    """An object holding lists nested `depth` levels deep in all."""
    return b'{"a":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


def test_json_as_deep_as_allowed_is_parsed_and_answered(server):
    status, _, body = server.request("/echo", "POST", _nested(MAX_JSON_DEPTH), {"Content-Type": "application/json"})
    assert status == 200, body


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 9_987], ids=["just-too-deep", "parser-limit"])
def test_json_too_deep_to_answer_is_refused_when_parsed(server, depth):
    status, headers, body = server.request("/echo", "POST", _nested(depth), {"Content-Type": "application/json"})
    assert status == 400, body
    assert headers["Content-Type"] == "application/problem+json"
    assert b"nested" in body or b"depth" in body


def test_a_client_still_sending_a_refused_body_reads_the_413(server):
    """The server answers 413 before the body is in, then closes lingeringly: no broken pipe, no reset."""
    body = b"{" + b" " * (2 * 2**20) + b"}"  # over the free plan's 1 MB
    statuses = [server.request("/echo", "POST", body, {"Content-Type": "application/json"})[0] for _ in range(30)]
    assert statuses == [413] * 30


@pytest.mark.parametrize("coding", ["gzip, chunked", "deflate, chunked", "x-custom, chunked", "gzip"])
def test_a_transfer_coding_other_than_chunked_is_a_501_problem(server, coding):
    """RFC 9112 section 6.1: a coding the server does not understand is answered 501, as nginx does.

    gunicorn took `gzip, chunked`, undid the chunks and handed the app the gzip bytes as the body.
    """
    body = b'{"a": 1}'
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: %s\r\n\r\n"
    answer = server.exchange(head % coding.encode() + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body), timeout=5)
    assert answer.startswith(b"HTTP/1.1 501 Not Implemented\r\n"), answer[:300]
    assert PROBLEM in answer
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["status"] == 501
