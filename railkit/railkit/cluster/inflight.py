"""A worker's requests in flight: how long its app has worked on each, for the master's watchdog.

Only the app's own work counts: the time inside the WSGI call, and inside
each step of a streamed body. The time a client takes to send its body or
to download the answer does not, so a slow upload, a long download or a
server-sent-events stream is not taken for a stuck request. gthread serves requests in several threads at
once, so every change happens under one lock.
"""

import re
import threading
import time
from collections.abc import Callable, Iterable

from ..request_ids import INCOMING_HEADERS, VALID_ID
from . import gunicorn_compat as compat

# Headers that may carry the request's id, as gunicorn stores their names.
ID_HEADERS = tuple(name.upper() for name in INCOMING_HEADERS)
# A path is cut to this many characters in the board's label.
MAX_PATH_CHARS = 160
# Only ASCII printable characters make it into a label.
UNPRINTABLE = re.compile(r"[^\x21-\x7e]")


def describe(req) -> str:
    """One gunicorn request as `METHOD path request-id` (the id as the client sent it, or -)."""
    request_id = next((value for name, value in req.headers if name in ID_HEADERS and VALID_ID.match(value)), "-")
    path = UNPRINTABLE.sub("?", req.path or "")[:MAX_PATH_CHARS]
    return f"{req.method} {path} {request_id}"


class InFlight:
    """This worker's requests, and since when its app has been busy with the oldest one."""

    def __init__(self, publish: Callable[[float, str], None]):
        # publish(busy_since, label) puts the oldest busy request on the board (0: idle).
        self.publish = publish
        self.lock = threading.Lock()
        # key -> label, for every request between pre_request and post_request.
        self.open: dict[int, str] = {}
        # key -> when the app started its current step, oldest first.
        self.working: dict[int, float] = {}
        # The (key, since) last put on the board: most changes leave the oldest as it was.
        self.shown: tuple[int, float] | None = None

    def __len__(self) -> int:
        return len(self.open)

    def begin(self, key: int, label: str) -> None:
        with self.lock:
            self.open[key] = label
            self.working[key] = time.time()
            self._publish()

    def resume(self, key: int) -> None:
        """The app works on the request again (the next chunk of its body)."""
        with self.lock:
            if key in self.open:
                self.working[key] = time.time()
                self._publish()

    def pause(self, key: int) -> None:
        """The app handed over a response or a chunk: the client's download is not its work."""
        with self.lock:
            if self.working.pop(key, None) is not None:
                self._publish()

    def end(self, key: int) -> None:
        with self.lock:
            self.open.pop(key, None)
            self.working.pop(key, None)
            self._publish()

    def _publish(self) -> None:
        # Re-inserted keys go last, so the first one is the oldest.
        oldest = next(iter(self.working.items()), None)
        if oldest == self.shown:
            return
        if oldest is None:
            self.publish(0.0, "")
        else:
            key, since = oldest
            self.publish(since, self.open.get(key, ""))
        self.shown = oldest


class TimedApp:
    """Wraps a worker's WSGI app so only the app's own work is timed."""

    def __init__(self, app, in_flight: InFlight, current_key: Callable[[], int | None]):
        self.app = app
        self.in_flight = in_flight
        self.current_key = current_key

    def __call__(self, environ, start_response):
        key = self.current_key()
        if key is not None and "wsgi.input" in environ:
            environ["wsgi.input"] = TimedInput(environ["wsgi.input"], self.in_flight, key)
        try:
            body = self.app(environ, start_response)
        finally:
            if key is not None:
                self.in_flight.pause(key)
        file_wrapper = environ.get("wsgi.file_wrapper")
        if key is None or (file_wrapper and isinstance(body, file_wrapper)):
            return body
        return TimedBody(body, self.in_flight, key)


class TimedInput:
    """The request body stream: time spent waiting for the client's bytes is not the app's work."""

    def __init__(self, stream, in_flight: InFlight, key: int):
        self.stream = stream
        self.in_flight = in_flight
        self.key = key

    def _waiting(self, read, *args):
        self.in_flight.pause(self.key)
        try:
            return read(*args)
        finally:
            self.in_flight.resume(self.key)

    def read(self, *args):
        return self._waiting(self.stream.read, *args)

    def readline(self, *args):
        return self._waiting(self.stream.readline, *args)

    def readlines(self, *args):
        return self._waiting(self.stream.readlines, *args)

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line


class TimedBody:
    """A response body whose every step is timed as the app's work."""

    def __init__(self, body: Iterable, in_flight: InFlight, key: int):
        self.body = body
        self.chunks = iter(body)
        self.in_flight = in_flight
        self.key = key

    def __iter__(self):
        return self

    def __next__(self):
        self.in_flight.resume(self.key)
        try:
            return next(self.chunks)
        finally:
            self.in_flight.pause(self.key)

    def close(self):
        if hasattr(self.body, "close"):
            self.body.close()


class ConnectionQuota:
    """Closes a keep-alive connection after its quota of requests, so its client reconnects elsewhere."""

    def __init__(self, requests_per_connection: int | None):
        self.requests_per_connection = requests_per_connection

    def apply(self, req) -> None:
        if self.requests_per_connection and compat.requests_on_connection(req) >= self.requests_per_connection:
            compat.close_after_answer(req)


def request_key_holder() -> tuple[Callable[[int], None], Callable[[], int | None]]:
    """(set, get) of the request a thread (or greenlet) is serving now."""
    local = threading.local()

    def set_key(key: int | None) -> None:
        local.key = key

    def get_key() -> int | None:
        return getattr(local, "key", None)

    return set_key, get_key
