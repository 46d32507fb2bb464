"""Load generators: wrk for throughput, a small client that can tell a dropped request from a refused one."""

import http.client
import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@dataclass
class LoadResult:
    requests: int
    rps: float
    errors: int
    timeouts: int
    non_2xx: int
    p50_ms: float | None
    p99_ms: float | None
    wrk_cpu_s: float | None = None  # wrk's own CPU time: on a shared machine, taken from the server's


def wrk(
    url: str, connections: int, seconds: float, threads: int = 2, timeout: str = "5s", script: str | None = None
) -> LoadResult:
    """Run wrk and parse its summary (--latency gives the percentiles); `script`: a Lua file that makes each request."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: `make bench` installs it (apt-get install wrk)")
    threads = min(threads, connections)
    command = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", f"--timeout={timeout}", "--latency",
        *(("--script", script) if script else ()), url,
    ]  # fmt: skip
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
        output = process.stdout.read()
        # wait4 rather than wait: it also hands back the CPU time wrk used.
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise subprocess.CalledProcessError(process.returncode, command, output)
    result = parse_wrk(output)
    result.wrk_cpu_s = usage.ru_utime + usage.ru_stime
    return result


def parse_wrk(output: str) -> LoadResult:
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    socket_errors = re.search(r"connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    connect, read, write, timeouts = map(int, socket_errors.groups()) if socket_errors else (0, 0, 0, 0)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return LoadResult(
        requests=requests,
        rps=rps,
        errors=connect + read + write,
        timeouts=timeouts,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        p50_ms=_percentile(output, "50%"),
        p99_ms=_percentile(output, "99%"),
    )


def _percentile(output: str, label: str) -> float | None:
    match = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE)
    return float(match.group(1)) * UNITS[match.group(2)] if match else None


@dataclass
class Outcomes:
    """What happened to each request of a client that opens a new connection per request."""

    ok: int = 0
    refused: int = 0  # the connection was refused: the server never took the request
    dropped: int = 0  # the connection was accepted but the answer never came
    other: list = field(default_factory=list)


class SteadyClient:
    """Threads sending GET requests back to back until stopped, each on a fresh connection."""

    def __init__(self, host: str, port: int, path: str, threads: int):
        self.host, self.port, self.path = host, port, path
        self.outcomes = Outcomes()
        self.lock = threading.Lock()
        self.running = True
        self.threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(threads)]

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_):
        self.running = False
        for thread in self.threads:
            thread.join(30)

    def _loop(self):
        while self.running:
            outcome = self._one()
            with self.lock:
                if outcome == "ok":
                    self.outcomes.ok += 1
                elif outcome == "refused":
                    self.outcomes.refused += 1
                    time.sleep(0.01)
                elif outcome == "dropped":
                    self.outcomes.dropped += 1
                else:
                    self.outcomes.other.append(outcome)

    def _one(self) -> str:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            connection.connect()
        except ConnectionRefusedError:
            return "refused"
        except OSError as error:
            return f"connect: {error}"
        try:
            connection.request("GET", self.path)
            response = connection.getresponse()
            response.read()
            return "ok" if response.status == 200 else f"status {response.status}"
        except (TimeoutError, ConnectionError):  # a reset, or no answer at all
            return "dropped"
        finally:
            connection.close()
