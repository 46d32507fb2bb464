"""Hostile clients for the tests, and the availability they leave: the figures make bench reports too.

Availability is the share of `/health` probes, each on a new connection, one
every PROBE_INTERVAL, answered 200 within PROBE_TIMEOUT.
"""

import contextlib
import heapq
import http.client
import random
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field

# A probe that takes longer than this counts as unanswered. Starved /health waits far longer (or
# forever); the margin is for the suite's busy machine, where the test's own process stalls too.
PROBE_TIMEOUT = 5.0
PROBE_INTERVAL = 0.1
# Railway keeps this many stdout lines per second per replica.
RAILWAY_LINES_PER_SECOND = 500
# What a slow client trickles, a byte at a time: a request head that never ends.
SLOW_HEAD = b"GET /health HTTP/1.1\r\nHost: attacker\r\nX-Slow: " + b"a" * 4096


@dataclass
class Availability:
    answered: int = 0
    probes: int = 0
    latencies: list[float] = field(default_factory=list)

    @property
    def share(self) -> float:
        return self.answered / self.probes if self.probes else 0.0

    def __str__(self) -> str:
        slowest = max(self.latencies, default=0.0)
        return f"{self.answered}/{self.probes} probes answered within {PROBE_TIMEOUT}s (slowest {slowest:.2f}s)"


def probe_health(port: int, seconds: float, until=lambda: True) -> Availability:
    """Probe `/health` for `seconds`, a new connection each time, and on until `until()` (three times as long at most).

    `until` waits for the attack to reach its size: on a busy machine the attacker opens its connections slower.
    """
    result = Availability()
    begun = time.monotonic()
    while (now := time.monotonic()) < begun + seconds or (not until() and now < begun + 3 * seconds):
        started = time.monotonic()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=PROBE_TIMEOUT)
        try:
            connection.request("GET", "/health")
            ok = connection.getresponse().status == 200
        except OSError:
            ok = False
        finally:
            connection.close()
        elapsed = time.monotonic() - started
        result.probes += 1
        result.latencies.append(elapsed)
        result.answered += ok and elapsed <= PROBE_TIMEOUT
        time.sleep(max(0.0, PROBE_INTERVAL - elapsed))
    return result


class HostileConnections:
    """Slow-header and silent connections, held from one thread; each is reopened when the server closes it.

    `cut_off` counts connections the server closed, by kind: a server with a
    total deadline on request heads closes slow ones however steadily they trickle.
    """

    def __init__(self, port: int, slow: int = 0, silent: int = 0, byte_every: float = 3.0):
        self.port = port
        self.wanted = {"slow": slow, "silent": silent}
        self.byte_every = byte_every
        self.cut_off = {"slow": 0, "silent": 0}
        self.open = {"slow": 0, "silent": 0}
        self.selector = selectors.DefaultSelector()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "HostileConnections":
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stopping.set()
        self.thread.join(30)

    def _open(self, kind: str) -> None:
        sock = socket.socket()
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            sock.connect(("127.0.0.1", self.port))
        state = {"kind": kind, "sent": 0, "next": time.monotonic() + self.byte_every}
        self.selector.register(sock, selectors.EVENT_READ, state)
        self.open[kind] += 1

    def _close(self, sock: socket.socket, state: dict, by_server: bool) -> None:
        self.selector.unregister(sock)
        sock.close()
        self.open[state["kind"]] -= 1
        self.cut_off[state["kind"]] += by_server

    def _run(self) -> None:
        while not self.stopping.is_set():
            for kind, wanted in self.wanted.items():
                for _ in range(min(50, wanted - self.open[kind])):
                    self._open(kind)
            for key, _ in self.selector.select(0.1):
                try:
                    closed = not key.fileobj.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    closed = True
                if closed:
                    self._close(key.fileobj, key.data, by_server=True)
            now = time.monotonic()
            for key in list(self.selector.get_map().values()):
                state = key.data
                if state["kind"] == "slow" and state["next"] <= now:
                    state["next"] = now + self.byte_every
                    try:
                        key.fileobj.send(SLOW_HEAD[state["sent"] : state["sent"] + 1])
                        state["sent"] += 1
                    except BlockingIOError:
                        pass
                    except OSError:
                        self._close(key.fileobj, state, by_server=True)
        for key in list(self.selector.get_map().values()):
            self._close(key.fileobj, key.data, by_server=False)
        self.selector.close()


class BodyBombs:
    """Clients posting `bodies` to `path` over and over, from one thread, as one remote attacker would.

    One thread, not one per client: the kernel shares CPU out per thread, and
    twenty local client threads would take the CPU a replica has to itself
    on Railway. `answers` counts the status codes, and "reset" for a
    connection that ended without a full status line.
    """

    def __init__(self, port: int, bodies: list[bytes], clients: int = 20, path: str = "/echo"):
        self.port = port
        self.requests = [
            b"POST %s HTTP/1.1\r\nHost: attacker\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n%s" % (path.encode(), len(body), body)
            for body in bodies
        ]
        self.clients = clients
        self.answers: dict[str, int] = {}
        self.selector = selectors.DefaultSelector()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.sent = 0

    def __enter__(self) -> "BodyBombs":
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stopping.set()
        self.thread.join(60)

    def _open(self) -> None:
        sock = socket.socket()
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            sock.connect(("127.0.0.1", self.port))
        state = {"out": memoryview(self.requests[self.sent % len(self.requests)]), "in": b""}
        self.sent += 1
        self.selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, state)

    def _finish(self, sock: socket.socket, state: dict) -> None:
        self.selector.unregister(sock)
        sock.close()
        head = state["in"].split(b"\r\n", 1)[0].split(b" ")
        status = head[1].decode() if len(head) > 1 and head[0].startswith(b"HTTP/") else "reset"
        self.answers[status] = self.answers.get(status, 0) + 1

    def _run(self) -> None:
        while not self.stopping.is_set():
            while len(self.selector.get_map()) < self.clients:
                self._open()
            for key, events in self.selector.select(0.1):
                sock, state = key.fileobj, key.data
                try:
                    if events & selectors.EVENT_WRITE and state["out"]:
                        state["out"] = state["out"][sock.send(state["out"][:262144]) :]
                        if not state["out"]:
                            self.selector.modify(sock, selectors.EVENT_READ, state)
                    if events & selectors.EVENT_READ:
                        data = sock.recv(65536)
                        state["in"] += data
                        if not data:
                            self._finish(sock, state)
                except BlockingIOError:
                    continue
                except OSError:
                    self._finish(sock, state)
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()
        self.selector.close()


def flood(port: int, request: bytes, seconds: float, connections: int = 50) -> int:
    """Send `request` on `connections` new connections at a time, from one thread, for `seconds`.

    Each connection sends once, reads until the server closes it, and is
    replaced. Returns how many requests were answered.
    """
    selector = selectors.DefaultSelector()
    answered = 0
    deadline = time.monotonic() + seconds

    def open_one() -> None:
        sock = socket.socket()
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            sock.connect(("127.0.0.1", port))
        selector.register(sock, selectors.EVENT_WRITE)

    try:
        while time.monotonic() < deadline:
            while len(selector.get_map()) < connections:
                open_one()
            for key, events in selector.select(0.1):
                sock = key.fileobj
                try:
                    if events & selectors.EVENT_WRITE:
                        sock.sendall(request)
                        selector.modify(sock, selectors.EVENT_READ)
                        continue
                    if sock.recv(65536):
                        continue
                    answered += 1
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    pass
                selector.unregister(sock)
                sock.close()
    finally:
        for key in list(selector.get_map().values()):
            key.fileobj.close()
        selector.close()
    return answered


@dataclass
class UsersOutcome:
    """What kept-alive users saw: each request answered on its first try, or how it failed."""

    sent: int = 0
    answered: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    # Connections the server closed between requests, announced by `Connection: close` (clean) or not.
    closed_cleanly: int = 0

    @property
    def first_try(self) -> float:
        return self.answered / self.sent if self.sent else 0.0

    def fail(self, kind: str) -> None:
        self.failures[kind] = self.failures.get(kind, 0) + 1

    def __str__(self) -> str:
        share = f"{self.first_try * 100:.2f} %"
        return f"{self.answered}/{self.sent} answered on the first try ({share}); failures {self.failures}"


class KeptAliveUsers:
    """`users` clients, each on one kept-alive connection, asking for `path` every `interval` seconds, from one thread.

    A request counts as answered when its full answer arrives on the connection
    it was sent on, within `answer_timeout`; an EOF, a reset or silence instead
    is a failure (a client that cannot retry blindly, a POST, would have lost
    it). A connection the server closed after announcing it is reopened for the
    next request, as a client does.
    """

    def __init__(self, port: int, users: int, interval: float, path: str = "/health", answer_timeout: float = 10.0):
        self.port = port
        self.users = users
        self.interval = interval
        self.request = b"GET %s HTTP/1.1\r\nHost: users\r\n\r\n" % path.encode()
        self.answer_timeout = answer_timeout
        self.outcome = UsersOutcome()
        self.selector = selectors.DefaultSelector()
        self.due: list[tuple[float, int]] = []  # (when, user) heap

    def run(self, seconds: float, opening_seconds: float = 2.0) -> UsersOutcome:
        """Open the users over `opening_seconds`, let each ask every `interval` for `seconds`; close them all."""
        start = time.monotonic()
        expired_at = start
        users = [{"sock": None, "in": b"", "sent_at": None, "index": index} for index in range(self.users)]
        for user in users:
            heapq.heappush(self.due, (start + random.uniform(0, max(self.interval, opening_seconds)), user["index"]))
        end = start + seconds
        try:
            while True:
                now = time.monotonic()
                while self.due and self.due[0][0] <= now:
                    _, index = heapq.heappop(self.due)
                    if now < end:
                        self._ask(users[index], now)
                if now >= end and (now >= end + self.answer_timeout or not self._awaiting(users)):
                    break
                timeout = min(0.05, max(0.0, self.due[0][0] - now)) if self.due else 0.05
                for key, _ in self.selector.select(timeout):
                    self._read(key.data, time.monotonic())
                if time.monotonic() - expired_at > 0.5:
                    expired_at = time.monotonic()
                    self._expire(users, expired_at)
        finally:
            for user in users:
                if user["sock"] is not None:
                    self._drop(user)
            self.selector.close()
        return self.outcome

    def _ask(self, user: dict, now: float) -> None:
        if user["sent_at"] is not None:
            # Still waiting for the last answer: a user asks again only once answered.
            heapq.heappush(self.due, (now + self.interval, user["index"]))
            return
        if user["sock"] is None:
            sock = socket.socket()
            sock.setblocking(False)
            try:
                sock.connect(("127.0.0.1", self.port))
            except BlockingIOError:
                pass
            except OSError:
                sock.close()
                self.outcome.sent += 1
                self.outcome.fail("connect")
                heapq.heappush(self.due, (now + self.interval, user["index"]))
                return
            user["sock"] = sock
            self.selector.register(sock, selectors.EVENT_READ, user)
        self.outcome.sent += 1
        try:
            user["sock"].send(self.request)  # small: fits the socket's buffer, even while connecting
        except OSError as error:
            self.outcome.fail("reset" if isinstance(error, ConnectionError) else "send")
            self._drop(user)
            heapq.heappush(self.due, (now + self.interval, user["index"]))
            return
        user["sent_at"] = now
        user["in"] = b""
        heapq.heappush(self.due, (now + self.interval, user["index"]))

    def _read(self, user: dict, now: float) -> None:
        try:
            data = user["sock"].recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = None
        if not data:
            if user["sent_at"] is not None:
                self.outcome.fail("eof" if data == b"" else "reset")
            self._drop(user)
            return
        user["in"] += data
        head, found, body = user["in"].partition(b"\r\n\r\n")
        if not found:
            return
        lowered = head.lower()
        length = 0
        for line in lowered.split(b"\r\n"):
            if line.startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        if len(body) < length or user["sent_at"] is None:
            return
        self.outcome.answered += head.startswith(b"HTTP/1.1 200")
        if not head.startswith(b"HTTP/1.1 200"):
            self.outcome.fail(head[:40].decode(errors="replace"))
        user["sent_at"] = None
        user["in"] = b""
        if b"\r\nconnection: close" in lowered:
            self.outcome.closed_cleanly += 1
            self._drop(user)

    @staticmethod
    def _awaiting(users: list) -> bool:
        return any(user["sent_at"] is not None for user in users)

    def _expire(self, users: list, now: float) -> None:
        for user in users:
            if user["sent_at"] is not None and now - user["sent_at"] > self.answer_timeout:
                self.outcome.fail("timeout")
                self._drop(user)

    def _drop(self, user: dict) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(user["sock"])
        user["sock"].close()
        user["sock"] = None
        user["sent_at"] = None


class SlowReaders:
    """Clients asking for `path` with a tiny receive buffer and never reading, `per_second` new ones a second.

    Each is closed after `hold` seconds, as a client giving up would be.
    """

    def __init__(self, port: int, path: str = "/big?mb=8", per_second: float = 20, hold: float = 30.0):
        self.port = port
        self.request = b"GET %s HTTP/1.1\r\nHost: reader\r\n\r\n" % path.encode()
        self.per_second = per_second
        self.hold = hold
        self.opened = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "SlowReaders":
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stopping.set()
        self.thread.join(30)

    def _run(self) -> None:
        held: list[tuple[float, socket.socket]] = []
        try:
            while not self.stopping.is_set():
                now = time.monotonic()
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.settimeout(2)
                try:
                    sock.connect(("127.0.0.1", self.port))
                    sock.sendall(self.request)
                    held.append((now, sock))
                    self.opened += 1
                except OSError:
                    sock.close()
                while held and held[0][0] < now - self.hold:
                    held.pop(0)[1].close()
                self.stopping.wait(1 / self.per_second)
        finally:
            for _, sock in held:
                sock.close()


def stdout_lines_per_second(server, seconds: float) -> list[float]:
    """The server's stdout rate over each two-second span, sampled every second for `seconds`.

    Divided by the time that really passed: on a busy machine a sample wakes late, or the log
    reader falls behind and hands over a second's lines with the next one's.
    """
    samples = [(time.monotonic(), len(server.lines))]
    for _ in range(int(seconds)):
        time.sleep(1)
        samples.append((time.monotonic(), len(server.lines)))
    spans = zip(samples, samples[2:], strict=False)
    return [(lines - before) / (now - then) for (then, before), (now, lines) in spans]
