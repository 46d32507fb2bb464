"""How the workers answer on their own: client errors as problems, a refusal, and the Date header.

gunicorn internals this relies on (checked at start by gunicorn_compat):
Worker.handle_error, util.http_date.
"""

import contextlib
import time

from gunicorn import util

from ..errors import ClientError, linger, write_problem
from .reading import body_left

_original_http_date = util.http_date
# (second, its Date header value): rebuilt once a second, not formatted for every response.
_current_date = (0, "")


def cached_http_date(timestamp=None) -> str:
    """gunicorn's util.http_date, formatting the current second once instead of once per response."""
    global _current_date
    if timestamp is not None:
        return _original_http_date(timestamp)
    now = int(time.time())
    second, text = _current_date
    if second != now:
        text = _original_http_date(now)
        _current_date = (now, text)  # one tuple, swapped whole: safe to read from any thread
    return text


def install_cached_http_date() -> None:
    """Make this worker process stamp responses' Date from cached_http_date."""
    util.http_date = cached_http_date


def refuse_for_now(sock) -> None:
    """Answer 429: the worker is reading as many large bodies as it may."""
    with contextlib.suppress(OSError):
        write_problem(sock, 429, "Too Many Requests", "Too many large bodies are being read; retry shortly")


class AnswersClientErrors:
    """Answers reading's client errors as problems, like gunicorn's own 4xx, and counts them as invalid requests."""

    # Whether this worker closes lingeringly right here (gevent, sync) or in its event loop (gthread).
    lingers_in_handler = True
    # Whether gunicorn closes this worker's connections at once, over bytes still arriving (gevent):
    # sync closes gracefully itself, gthread lingers in its loop.
    closes_abruptly = False

    def handle_error(self, req, client, addr, exc):
        if not isinstance(exc, ClientError):
            super().handle_error(req, client, addr, exc)
            # No request (a head refused: 400, 414, 431): the rest of it may still be on its way.
            if self.lingers_in_handler and (body_left(req) or (req is None and self.closes_abruptly)):
                linger(client)
            return
        ip = addr[0] if isinstance(addr, tuple) else ""
        self.log.warning("Invalid request from ip=%s: %s", ip, exc)
        try:
            write_problem(client, exc.status, exc.reason, str(exc))
        except OSError:
            return
        if self.lingers_in_handler:
            linger(client)
