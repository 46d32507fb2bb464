"""gunicorn's own error answers, as problem+json like the app's.

gunicorn answers a request it cannot parse (a request line or headers over
the limits, a malformed header) before the app sees it, with an HTML page.
Every error the service returns should have one shape, so each worker swaps
gunicorn's writer for this one.
"""

import json

from gunicorn import util


def write_problem(sock, status_int: int, reason: str, mesg: str) -> None:
    """Drop-in for gunicorn.util.write_error: the same answer, as RFC 9457 JSON."""
    body = json.dumps({"type": "about:blank", "title": reason, "status": status_int, "detail": mesg}).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/problem+json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


def answer_protocol_errors_as_problems() -> None:
    util.write_error = write_problem
