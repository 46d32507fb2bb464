"""The servers being compared, each started from a generated project on a free port."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import psutil

# Everything allowed: the benchmark measures throughput, not the rate limiter's verdicts.
UNLIMITED = {"RATE_LIMIT": "1000000000/second"}
STARTUP_DEADLINE = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """One server process (and its children), started in its own process group."""

    def __init__(self, name: str, project: Path, venv: Path, command: list[str], env: dict | None = None):
        self.name = name
        self.project = project
        self.port = free_port()
        self.runtime_dir = tempfile.mkdtemp(prefix="bench-")
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in ("WEB_CONCURRENCY", "ENABLE_CLUSTERING", "PORT")},
            **UNLIMITED,
            "PORT": str(self.port),
            "PATH": f"{venv / 'bin'}:{os.environ['PATH']}",
            "XDG_RUNTIME_DIR": self.runtime_dir,
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.log = open(Path(self.runtime_dir) / "server.log", "w+")  # noqa: SIM115 (closed in stop)
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [part.replace("{port}", str(self.port)) for part in command],
            cwd=project,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.startup_seconds = self._wait_healthy()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _wait_healthy(self) -> float:
        deadline = self.started + STARTUP_DEADLINE
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"{self.name} exited at start:\n{self.log.read()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as response:
                    if response.status == 200:
                        return time.monotonic() - self.started
            except OSError:
                time.sleep(0.01)
        raise RuntimeError(f"{self.name} did not answer /health within {STARTUP_DEADLINE}s")

    def pss_mb(self) -> float:
        """Proportional set size of the master and all its workers: shared pages counted once."""
        root = psutil.Process(self.process.pid)
        return sum(p.memory_full_info().pss for p in [root, *root.children(recursive=True)]) / 2**20

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signum)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()
        shutil.rmtree(self.runtime_dir, ignore_errors=True)
        return self.process.returncode


def cluster(project: Path, venv: Path, package: str, name: str = "cluster", **env) -> Server:
    """The generated project's own start command, serving the benchmark routes, every worker up."""
    command = ["python", "-m", f"{package}.cluster", "serve", "bench_routes:app"]
    server = Server(name, project, venv, command, env)
    # Measure the steady state: connections made while only the first worker
    # is up would all be served by it.
    board = board_of(server, package)
    deadline = time.monotonic() + STARTUP_DEADLINE
    while len(board.workers()) < board.master()[1]:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name}: not every worker started")
        time.sleep(0.01)
    return server


def bare_gunicorn(project: Path, venv: Path) -> Server:
    """What Railway runs without this template: gunicorn's defaults, one sync worker."""
    command = ["gunicorn", "--config", "/dev/null", "--bind", "127.0.0.1:{port}", "bench_routes:app"]
    return Server("bare gunicorn", project, venv, command)


def flask_dev_server(project: Path, venv: Path) -> Server:
    """`flask run`: Flask's threaded development server."""
    command = ["flask", "--app", "bench_routes:app", "run", "--port", "{port}"]
    return Server("flask run", project, venv, command)


@contextmanager
def running(server_factory, *args, **kwargs):
    server = server_factory(*args, **kwargs)
    try:
        yield server
    finally:
        server.stop()


def board_of(server: Server, package: str):
    """The cluster's scoreboard, read from the generated project's own module."""
    sys.path.insert(0, str(server.project))
    try:
        board = __import__(f"{package}.cluster.board", fromlist=["Board"])
    finally:
        sys.path.pop(0)
    path = board.runtime_dir(server.port, base=server.runtime_dir) / "workers.board"
    return board.Board.open(path)
