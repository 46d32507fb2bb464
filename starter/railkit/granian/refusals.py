"""The answers a granian worker gives before the app runs, in the app's own shape (RFC 9457 problem+json).

Each carries a request id, as the app's answers do (the edge's or the
client's, else a new one), and closes its connection.
"""

import json
import os
from http import HTTPStatus

from ..request_ids import INCOMING_HEADERS, VALID_ID

MEDIA_TYPE = "application/problem+json"
# The headers that may carry the request's id, as the WSGI environ names them.
ID_KEYS = tuple("HTTP_" + name.upper().replace("-", "_") for name in INCOMING_HEADERS)


def request_id(environ: dict) -> str:
    """The id the edge or the client gave the request, if well-formed, else a new one (as web/request_log.py)."""
    given = next((environ[key] for key in ID_KEYS if VALID_ID.match(environ.get(key) or "")), None)
    return given or os.urandom(16).hex()


def refuse(environ: dict, start_response, status: int, detail: str) -> list[bytes]:
    """Answer `status` with a problem+json body saying `detail`, and close the connection after it."""
    phrase = HTTPStatus(status).phrase
    identifier = request_id(environ)
    problem = {
        "type": "about:blank",
        "title": phrase,
        "status": status,
        "detail": detail,
        "instance": environ.get("PATH_INFO", "")[:200],
        "request_id": identifier,
    }
    body = json.dumps(problem).encode()
    headers = [
        ("Content-Type", MEDIA_TYPE),
        ("Content-Length", str(len(body))),
        ("X-Request-ID", identifier),
        ("Connection", "close"),
    ]
    start_response(f"{status} {phrase}", headers)
    return [body]
