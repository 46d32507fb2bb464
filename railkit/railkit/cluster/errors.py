"""gunicorn's own error answers, as problem+json like the app's, and the errors the workers add.

gunicorn answers a request it cannot parse (a request line or headers over
the limits, a malformed header) before the app sees it, with an HTML page.
Every error the service returns should have one shape, so each worker swaps
gunicorn's writer for this one.
"""

import json
import socket
import time

from gunicorn import util
from gunicorn.http.errors import ParseException

from . import limits


class ClientError(ParseException):
    """A request refused because of how its client sends it; `status` is the answer."""

    status = 400
    reason = "Bad Request"

    def __init__(self, detail: str):
        self.detail = detail

    def __str__(self) -> str:
        return self.detail


class HeadTimeout(ClientError):
    """The request line and headers did not arrive within limits.HEADER_TIMEOUT."""

    status, reason = 408, "Request Timeout"


class BodyTimeout(ClientError):
    """The body did not arrive within limits.BODY_TIMEOUT: a slow upload, not a stuck worker."""

    status, reason = 408, "Request Timeout"


class BodyTooLarge(ClientError):
    """A chunked body declared more bytes than the body limit allows."""

    status, reason = 413, "Content Too Large"


class BodyWaitedTooLong(ClientError):
    """A large body waited limits.LARGE_BODY_WAIT seconds for its turn to be read: retry shortly."""

    status, reason = 429, "Too Many Requests"


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


def linger(sock, seconds: float = limits.LINGER_SECONDS, max_bytes: int = limits.LINGER_MAX_BYTES) -> None:
    """Close the way RFC 9112 section 9.6 asks: stop writing, read what the client still sends, then close.

    A client still sending a body it was refused (a 413, say) only reads the
    answer once its own write is done; closing at once would reset the
    connection under it and it would never see the answer. Bounded in time
    and bytes, so a client that never stops gets cut off all the same.
    """
    try:
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + seconds
        drained = 0
        while drained < max_bytes:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            sock.settimeout(min(remaining, limits.LINGER_IDLE_SECONDS))
            data = sock.recv(65536)
            if not data:
                break
            drained += len(data)
    except OSError:
        pass
    util.close(sock)
