"""Real servers for the tests, started as Railway starts them: poll, signal, read their JSON logs.

A gunicorn project's tests start `python -m gunicorn APP` (gunicorn.conf.py
runs the cluster); a granian project's start `python -m railkit.cluster serve
APP`, the only way granian runs under the platform.
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from railkit import project
from railkit.cluster.runtime import find_live_board

# The suite runs from a rendered project's root (its railkit.json, gunicorn.conf.py and railkit/ are
# there); the fixture apps are imported from this folder's parent, on PYTHONPATH (tests/platform.py).
PROJECT_ROOT = Path.cwd()
SUITE = Path(__file__).resolve().parent
# What the servers serve unless a test says otherwise: the platform's own app, never the owner's.
FIXTURE_APP = "railkit_tests.fixture_app:create_app()"
# The start command railway.ts declares, and the status command beside it.
CLUSTER_COMMAND = [sys.executable, "-m", "railkit.cluster"]
# The HTTP server this project runs (its railkit.json): the tests' default command starts it.
SERVER = project.SERVER
# Generous: the suite must pass on a loaded 2-core CI machine.
DEADLINE = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def message_starts(start: str):
    """A log-line predicate: its message starts with `start`."""
    return lambda log: log.get("message", "").startswith(start)


def wait_until(predicate, timeout=DEADLINE, interval=0.05, message="condition"):
    """Poll `predicate` until it returns something truthy; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


def serve_command(app: str) -> list[str]:
    """The command that serves `app` (module:name or module:factory()) with this project's server."""
    if SERVER == "granian":
        return [*CLUSTER_COMMAND, "serve", app]
    return [sys.executable, "-m", "gunicorn", app]


# The servers the running test started (conftest.py clears it before each): a failed test's report shows their logs.
STARTED: list["Server"] = []


class Server:
    """One master (gunicorn's, or granian's under the platform), started the way Railway starts it, its logs parsed."""

    def __init__(self, env: dict, app: str = FIXTURE_APP, command: list[str] | None = None, port: int | None = None):
        self.port = port or free_port()
        self.env = {
            **os.environ,
            "PORT": str(self.port),
            "PYTHONUNBUFFERED": "1",
            "RAILWAY_PLAN": "hobby",
            # Stops at once; the lame-duck tests set their own delay.
            "SHUTDOWN_DELAY": "0",
            # Short and private: the control socket's path must fit in 107 bytes.
            "XDG_RUNTIME_DIR": tempfile.mkdtemp(prefix="gunicorn-"),
            **env,
        }
        for name, value in list(self.env.items()):
            if value is None:
                del self.env[name]
        self.command = command or serve_command(app)
        self.lines: list[str] = []
        self.logs: list[dict] = []
        self.process = subprocess.Popen(
            self.command,
            cwd=PROJECT_ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        STARTED.append(self)

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line)
            with contextlib.suppress(ValueError):
                self.logs.append(json.loads(line))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(self, path: str, method: str = "GET", body: bytes | None = None, headers=None, timeout=DEADLINE):
        """(status, headers, body) of one request; HTTP errors are answers too."""
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read()

    def exchange(self, data: bytes, timeout: float = 10) -> bytes:
        """Send bytes no HTTP library would; the answer, read until the server closes (or `timeout`)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as connection:
            connection.sendall(data)
            answer = b""
            with contextlib.suppress(TimeoutError):
                while chunk := connection.recv(65536):
                    answer += chunk
        return answer

    def wait_healthy(self):
        def healthy():
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{''.join(self.lines)}")
            try:
                return self.request("/health", timeout=2)[0] == 200
            except OSError:
                return False

        wait_until(healthy, message=f"/health on port {self.port}")

    def wait_for_log(self, predicate, timeout=DEADLINE, message="a log line"):
        def found():
            return next((log for log in list(self.logs) if predicate(log)), None)

        return wait_until(found, timeout, message=message)

    def health(self) -> dict:
        return json.loads(self.request("/health")[2])

    def worker_pids(self) -> set[int]:
        """Pids of the live workers, as the cluster's board reports them."""
        board = find_live_board(self.port, base=Path(self.env["XDG_RUNTIME_DIR"]))
        return {slot.pid for slot in board.workers()} if board else set()

    def run_status(self, *options: str) -> subprocess.CompletedProcess:
        """Run `python -m railkit.cluster status` for this server."""
        if "--port" not in options:
            options = ("--port", str(self.port), *options)
        command = [*CLUSTER_COMMAND, "status", *options]
        return subprocess.run(command, cwd=PROJECT_ROOT, env=self.env, capture_output=True, text=True, timeout=60)

    def status(self, *options: str) -> str:
        """What the status command prints for this (running) server."""
        finished = self.run_status(*options)
        assert finished.returncode == 0, finished.stderr
        return finished.stdout

    def wait_for_workers(self, count: int, without: int | None = None) -> set[int]:
        """The live workers once there are `count` of them (and `without` is gone)."""

        def settled():
            pids = self.worker_pids()
            return pids if len(pids) == count and without not in pids else None

        return wait_until(settled, message=f"{count} live workers")

    def signal(self, signum: int):
        self.process.send_signal(signum)

    def wait_exit(self, timeout=DEADLINE) -> int:
        self.process.wait(timeout)
        self.reader.join(timeout)
        return self.process.returncode

    def kill_outright(self):
        """SIGKILL master and workers at once, as an OOM kill of the container would; keep the folder."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def kill(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        shutil.rmtree(self.env["XDG_RUNTIME_DIR"], ignore_errors=True)
