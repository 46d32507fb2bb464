"""Traffic one client can send (issue 9): availability and memory of a server while it lasts.

Each attack runs against a fresh server while a prober asks for /health on a
new connection every 100 ms; a probe counts as answered when a 200 arrives
within 2 s. Memory is the peak PSS of the server's processes, sampled.
"""

import http.client
import selectors
import socket
import threading
import time
from contextlib import suppress

import psutil

PROBE_EVERY = 0.1
PROBE_DEADLINE = 2.0
MEMORY_EVERY = 0.25
SLOW_HEADER_CONNECTIONS = 200
SLOW_HEADER_BYTE_EVERY = 3.0
SILENT_CONNECTIONS = 500
BOMB_CLIENTS = 20
FLOOD_THREADS = 4


class Prober:
    """Asks /health every PROBE_EVERY seconds; counts the answers that came in time."""

    def __init__(self, port: int):
        self.port = port
        self.sent = self.answered = 0
        self.running = True
        self.threads: list[threading.Thread] = []
        self.lock = threading.Lock()
        self.ticker = threading.Thread(target=self._tick, daemon=True)

    def __enter__(self):
        self.ticker.start()
        return self

    def __exit__(self, *_):
        self.running = False
        self.ticker.join()
        for thread in self.threads:
            thread.join(PROBE_DEADLINE + 1)

    def _tick(self):
        while self.running:
            thread = threading.Thread(target=self._probe, daemon=True)
            thread.start()
            self.threads.append(thread)
            time.sleep(PROBE_EVERY)

    def _probe(self):
        started = time.monotonic()
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=PROBE_DEADLINE)
        ok = False
        try:
            connection.request("GET", "/health")
            response = connection.getresponse()
            response.read()
            ok = response.status == 200 and time.monotonic() - started <= PROBE_DEADLINE
        except (OSError, http.client.HTTPException):
            pass
        finally:
            connection.close()
        with self.lock:
            self.sent += 1
            self.answered += ok

    @property
    def availability(self) -> float:
        return round(self.answered / self.sent, 4) if self.sent else 0.0


class MemorySampler:
    """Peak PSS of a server's processes (master and workers) while it runs."""

    def __init__(self, server):
        self.server = server
        self.peak_mb = 0.0
        self.running = True
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_):
        self.running = False
        self.thread.join()

    def _loop(self):
        while self.running:
            with suppress(psutil.Error):
                self.peak_mb = max(self.peak_mb, self.server.pss_mb())
            time.sleep(MEMORY_EVERY)


def _connect(port: int) -> socket.socket | None:
    try:
        return socket.create_connection(("127.0.0.1", port), timeout=2)
    except OSError:
        return None


def slow_headers(port: int, seconds: float, stop: threading.Event, scale: float = 1.0) -> dict:
    """SLOW_HEADER_CONNECTIONS clients each sending a header byte every few seconds, reconnecting when cut."""
    request = b"GET /health HTTP/1.1\r\nHost: bench\r\nX-Slow: " + b"a" * 1000
    sockets: dict[socket.socket, int] = {}
    count = max(1, round(SLOW_HEADER_CONNECTIONS * scale))
    cut = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not stop.is_set():
        while len(sockets) < count:
            sock = _connect(port)
            if sock is None:
                break
            sockets[sock] = 0
        for sock, sent in list(sockets.items()):
            try:
                sock.send(request[sent : sent + 1])
                sockets[sock] = sent + 1 if sent + 1 < len(request) else 0
            except OSError:
                cut += 1
                sock.close()
                del sockets[sock]
        stop.wait(min(SLOW_HEADER_BYTE_EVERY, max(0.0, deadline - time.monotonic())))
    for sock in sockets:
        sock.close()
    return {"connections": count, "cut_by_server": cut}


def silent(port: int, seconds: float, stop: threading.Event, scale: float = 1.0) -> dict:
    """SILENT_CONNECTIONS clients that connect and never send a byte, reconnecting when cut."""
    sockets: list[socket.socket] = []
    count = max(1, round(SILENT_CONNECTIONS * scale))
    cut = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not stop.is_set():
        alive = []
        for sock in sockets:
            sock.setblocking(False)
            try:
                closed = sock.recv(1) == b""
            except BlockingIOError:
                closed = False
            except OSError:
                closed = True
            if closed:
                cut += 1
                sock.close()
            else:
                alive.append(sock)
        sockets = alive
        while len(sockets) < count:
            sock = _connect(port)
            if sock is None:
                break
            sockets.append(sock)
        stop.wait(0.5)
    for sock in sockets:
        sock.close()
    return {"connections": count, "cut_by_server": cut}


def body_bombs(port: int, seconds: float, stop: threading.Event, scale: float = 1.0, body_mb: int = 8) -> dict:
    """BOMB_CLIENTS clients posting JSON bodies of `[{},{},...]` at the plan's size limit to /echo."""
    items = (body_mb * 2**20 - 2) // 3
    body = b"[" + b"{}," * (items - 1) + b"{}]"
    statuses: dict[str, int] = {}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client():
        while time.monotonic() < deadline and not stop.is_set():
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                connection.request("POST", "/echo", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                outcome = f"{response.status // 100}xx"
            except (OSError, http.client.HTTPException) as error:
                outcome = type(error).__name__
            finally:
                connection.close()
            with lock:
                statuses[outcome] = statuses.get(outcome, 0) + 1

    clients = max(1, round(BOMB_CLIENTS * scale))
    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 60)
    return {"clients": clients, "body_mb": round(len(body) / 2**20, 1), "outcomes": statuses}


def log_flood(port: int, seconds: float, stop: threading.Event, scale: float = 1.0) -> dict:
    """Malformed requests as fast as FLOOD_THREADS clients can send them, each on a new connection."""
    sent = [0] * max(1, round(FLOOD_THREADS * scale))
    deadline = time.monotonic() + seconds

    def client(index):
        while time.monotonic() < deadline and not stop.is_set():
            sock = _connect(port)
            if sock is None:
                continue
            with suppress(OSError):
                sock.sendall(b"NOT A REQUEST\r\n\r\n")
                sock.recv(1024)
            sock.close()
            sent[index] += 1

    threads = [threading.Thread(target=client, args=(index,), daemon=True) for index in range(len(sent))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 30)
    return {"malformed_requests": sum(sent)}


# Issue 27's red team: a declared body never sent, answers never read, clients that ask once and idle.
UNSENT_BODY_CONNECTIONS = 300
UNSENT_BODY_BYTES = 1_048_000  # just under the large-body gate (1 MiB)
SLOW_READERS_PER_SECOND = 20
SLOW_READER_HOLD = 30.0
IDLE_CLIENTS = 6000


def unsent_bodies(port: int, seconds: float, stop: threading.Event, scale: float = 1.0) -> dict:
    """Connections each sending GET /health with a Content-Length of just under 1 MiB and no body, reconnecting."""
    request = b"GET /health HTTP/1.1\r\nHost: bench\r\nContent-Length: %d\r\n\r\n" % UNSENT_BODY_BYTES
    connections = max(1, int(UNSENT_BODY_CONNECTIONS * scale))
    sockets: set[socket.socket] = set()
    answered = opened = 0
    deadline = time.monotonic() + seconds
    selector = selectors.DefaultSelector()
    try:
        while time.monotonic() < deadline and not stop.is_set():
            while len(sockets) < connections:
                sock = _connect(port)
                if sock is None:
                    break
                with suppress(OSError):
                    sock.sendall(request)
                sock.setblocking(False)
                selector.register(sock, selectors.EVENT_READ)
                sockets.add(sock)
                opened += 1
            for key, _ in selector.select(0.1):
                try:
                    data = key.fileobj.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                answered += data.startswith(b"HTTP/1.1 ")
                if not data:
                    selector.unregister(key.fileobj)
                    key.fileobj.close()
                    sockets.discard(key.fileobj)
    finally:
        for sock in sockets:
            sock.close()
        selector.close()
    return {"connections": connections, "opened": opened, "answers": answered}


def slow_readers(port: int, seconds: float, stop: threading.Event, scale: float = 1.0) -> dict:
    """Clients asking for an 8 MB answer with a 4 KiB receive buffer and never reading, 20 new ones a second."""
    request = b"GET /big HTTP/1.1\r\nHost: bench\r\n\r\n"
    held: list[tuple[float, socket.socket]] = []
    opened = 0
    every = 1 / max(1.0, SLOW_READERS_PER_SECOND * scale)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline and not stop.is_set():
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.settimeout(2)
            try:
                sock.connect(("127.0.0.1", port))
                sock.sendall(request)
                held.append((time.monotonic(), sock))
                opened += 1
            except OSError:
                sock.close()
            while held and held[0][0] < time.monotonic() - SLOW_READER_HOLD:
                held.pop(0)[1].close()
            time.sleep(every)
    finally:
        for _, sock in held:
            sock.close()
    return {"connections": opened}


def idle_clients(port: int, seconds: float, stop: threading.Event, scale: float = 1.0) -> dict:
    """Clients that each make one request on a kept-alive connection and then idle: every first request answered?"""
    from .users import raise_own_files_limit

    count = max(1, int(IDLE_CLIENTS * scale))
    raise_own_files_limit(count + 1024)
    request = b"GET /health HTTP/1.1\r\nHost: bench\r\n\r\n"
    selector = selectors.DefaultSelector()
    pending: dict[socket.socket, bytes] = {}
    answered = refused = 0
    every = max(seconds / 2, 0.1) / count  # all opened in the first half
    deadline = time.monotonic() + seconds + 10  # then 10 s more for the last answers
    opened = 0
    held = []
    try:
        while time.monotonic() < deadline and not stop.is_set():
            while opened < count and opened * every <= time.monotonic() - (deadline - seconds - 10):
                opened += 1
                sock = socket.socket()
                sock.setblocking(False)
                try:
                    sock.connect(("127.0.0.1", port))
                except BlockingIOError:
                    pass
                except OSError:
                    refused += 1
                    sock.close()
                    continue
                with suppress(OSError):
                    sock.send(request)
                selector.register(sock, selectors.EVENT_READ)
                pending[sock] = b""
                held.append(sock)
            if opened >= count and not pending:
                break
            for key, _ in selector.select(0.05):
                sock = key.fileobj
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                selector.unregister(sock)
                pending.pop(sock, None)
                answered += data.startswith(b"HTTP/1.1 200")  # then idle: the connection stays open, unread
    finally:
        for sock in held:
            sock.close()
        selector.close()
    return {"clients": count, "first_answered": answered, "first_answered_share": round(answered / count, 4)}


ATTACKS = {
    "slow headers": slow_headers,
    "silent connections": silent,
    "body bombs": body_bombs,
    "log flood": log_flood,
    "unsent bodies under the gate": unsent_bodies,
    "slow readers of 8 MB": slow_readers,
    "6,000 clients idle after one request": idle_clients,
}


def worker_crashes(server) -> int:
    """Workers that died crashing (not recycled or stopped), as the cluster's log says."""
    server.log.flush()
    with open(server.log.name, errors="replace") as log:
        return sum(1 for line in log if " died " in line and "crashed" in line)


def run(attack: str, server, seconds: float, body_mb: int, scale: float = 1.0) -> dict:
    """One attack against a running server: availability, peak memory and log lines per second.

    `scale` shrinks the attacker (connections, clients) for the bench's smoke run.
    """
    stop = threading.Event()
    lines_before, started = server.log_lines(), time.monotonic()
    peak_lines = 0
    with MemorySampler(server) as memory, Prober(server.port) as prober:
        result = {}
        kwargs = {"scale": scale, **({"body_mb": body_mb} if attack == "body bombs" else {})}
        attacker = threading.Thread(
            target=lambda: result.update(ATTACKS[attack](server.port, seconds, stop, **kwargs)), daemon=True
        )
        attacker.start()
        last = lines_before
        while attacker.is_alive():
            attacker.join(1.0)
            now = server.log_lines()
            peak_lines = max(peak_lines, now - last)
            last = now
    elapsed = time.monotonic() - started
    return {
        **result,
        "health_answered": prober.availability,
        "probes": prober.sent,
        "peak_pss_mb": round(memory.peak_mb, 1),
        "log_lines_per_s": round((server.log_lines() - lines_before) / elapsed),
        "peak_log_lines_per_s": peak_lines,
        "server_alive": server.process.poll() is None,
        "worker_crashes": worker_crashes(server),
    }
