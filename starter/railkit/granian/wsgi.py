"""The app as a granian worker serves it: heads and bodies checked, requests on the board, closing once stopping.

gunicorn's worker classes and server hooks do this for the gunicorn cluster;
granian has neither, so the worker wraps the app. A request is in flight from
its arrival until granian closes its answer (after the last byte, or when the
client is gone); only the app's own work counts toward REQUEST_TIMEOUT
(cluster/inflight.py), not the wait for a body (bodies.py) nor the download.
"""

import itertools
import re

from ..cluster.board import Board
from ..cluster.inflight import MAX_PATH_CHARS, InFlight, TimedApp, request_key_holder
from ..request_ids import INCOMING_HEADERS, VALID_ID
from .bodies import BodyGate, gate_input
from .heads import head_problem, tokens
from .refusals import refuse

# Under load, the worker writes its request count to the board once per this many requests (as gunicorn's hooks).
COUNT_EVERY = 32
# The headers that may carry the request's id, as the WSGI environ names them.
ID_KEYS = tuple("HTTP_" + name.upper().replace("-", "_") for name in INCOMING_HEADERS)
UNPRINTABLE = re.compile(r"[^\x21-\x7e]")


def describe(environ: dict) -> str:
    """A request as `METHOD path request-id` (the id as the client sent it, or -), for the watchdog's lines."""
    request_id = next((environ[key] for key in ID_KEYS if VALID_ID.match(environ.get(key) or "")), "-")
    path = UNPRINTABLE.sub("?", environ.get("PATH_INFO") or "")[:MAX_PATH_CHARS]
    return f"{environ.get('REQUEST_METHOD', '-')} {path} {request_id}"


class TrackedApp:
    """A worker's WSGI app: each request tracked on the board, each answer closing its connection once stopping."""

    def __init__(self, app, board: Board, slot: int, threads: int, max_body_bytes: int, closing=lambda: False):
        self.board = board
        # Whether this worker is about to stop alone (worker.closing).
        self.closing = closing
        self.bodies = BodyGate(threads, max_body_bytes)
        self.slot = slot
        self.in_flight = InFlight(lambda since, label: board.set_busy(slot, since, label))
        self.set_key, current_key = request_key_holder()
        self.app = TimedApp(app, self.in_flight, current_key)
        self.keys = itertools.count(1)
        self.served = itertools.count(1)

    def __call__(self, environ, start_response):
        problem = head_problem(environ)
        if problem:
            return refuse(environ, start_response, *problem)
        key = next(self.keys)
        self.in_flight.begin(key, describe(environ))
        self.board.set_in_flight(self.slot, len(self.in_flight))
        # A close token anywhere in Connection closes it (hyper keeps `keep-alive, close` open), as the cluster's does.
        asks_to_close = "close" in tokens(environ.get("HTTP_CONNECTION", ""))
        if asks_to_close or self.board.stopping_since() or self.closing():
            start_response = _closing(start_response)
        gated = gate_input(environ, self.bodies)
        answered = []
        if gated is not None:
            start_response = _noting_status(start_response, answered)
        self.set_key(key)
        try:
            body = self.app(environ, start_response)
        except BaseException:
            self.finish(key)
            raise
        finally:
            self.set_key(None)
        return Answer(body, lambda: self.finish(key, gated, answered))

    def finish(self, key: int, gated=None, answered=()) -> None:
        """The answer is out: a refused body dropped, the request off the board's requests in flight, and counted."""
        if gated is not None and answered:
            gated.drop_if_refused(answered[-1])
        self.in_flight.end(key)
        self.board.set_in_flight(self.slot, len(self.in_flight))
        served = next(self.served)
        # Exact at rest, at most COUNT_EVERY behind under load (the board is memory every process shares).
        if not self.in_flight or served % COUNT_EVERY == 0:
            self.board.set_requests(self.slot, served)


def _noting_status(start_response, answered: list):
    """start_response that notes the answer's status code in `answered`."""

    def start(status, headers, exc_info=None):
        answered.append(int(status[:3]))
        return start_response(status, headers, exc_info)

    return start


def _closing(start_response):
    """start_response adding `Connection: close`: the lame duck's proxies reconnect elsewhere (granian obeys it)."""

    def start(status, headers, exc_info=None):
        if not any(name.lower() == "connection" for name, _ in headers):
            headers = [*headers, ("Connection", "close")]
        return start_response(status, headers, exc_info)

    return start


class Answer:
    """An answer's body, and what to do once granian has sent it (or given up on the client) and closed it."""

    __slots__ = ("body", "on_close")

    def __init__(self, body, on_close):
        self.body = body
        self.on_close = on_close

    def __iter__(self):
        return iter(self.body)

    def close(self):
        try:
            if hasattr(self.body, "close"):
                self.body.close()
        finally:
            self.on_close()
