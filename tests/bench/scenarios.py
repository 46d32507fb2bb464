"""Each measurement the seed's claims need, run against real servers."""

import os
import random
import signal
import statistics
import threading
import time
from dataclasses import asdict

from . import servers
from .load import SteadyClient, wrk


class Bench:
    """The projects under test and how long each load runs."""

    def __init__(self, default, gevent, rounds: int, seconds: float):
        # (project dir, venv, package) of the default (gthread) and the gevent project
        self.default = default
        self.gevent = gevent
        self.rounds = rounds
        self.seconds = seconds

    def contenders(self) -> dict:
        """How to start each server compared in the throughput runs."""
        project, venv, package = self.default
        gevent_project, gevent_venv, gevent_package = self.gevent
        return {
            "bare gunicorn": lambda: servers.bare_gunicorn(project, venv),
            "flask run": lambda: servers.flask_dev_server(project, venv),
            "cluster (gthread)": lambda: servers.cluster(project, venv, package, "cluster (gthread)"),
            "cluster (gevent)": lambda: servers.cluster(
                gevent_project, gevent_venv, gevent_package, "cluster (gevent)"
            ),
        }

    def throughput(self) -> dict:
        """Requests/s for /cpu at 16 connections and /io at 200 and 1000: medians of alternated runs.

        Each run has a freshly started server to itself: an overloaded server
        keeps working off the queued requests of a run long after it ends.
        """
        loads = {
            "cpu, 16 connections": ("/cpu", 16),
            "io, 200 connections": ("/io", 200),
            "io, 1000 connections": ("/io", 1000),
        }
        figures = {}
        for load, (path, connections) in loads.items():
            samples = {}
            for _ in range(self.rounds):
                for name, start in self.contenders().items():
                    server = start()
                    try:
                        samples.setdefault(name, []).append(wrk(server.url + path, connections, self.seconds))
                    finally:
                        server.stop(signal.SIGKILL)
            figures[load] = {name: _median_result(results) for name, results in samples.items()}
        return figures

    def workers_sweep(self, counts=(1, 2, 4, 8)) -> dict:
        """Memory (PSS of the whole cluster) and /cpu throughput for each worker count."""
        project, venv, package = self.default
        sweep = {}
        for count in counts:
            with servers.running(servers.cluster, project, venv, package, WEB_CONCURRENCY=str(count)) as server:
                wrk(server.url + "/cpu", 16, max(1.0, self.seconds / 2))
                rps = statistics.median(wrk(server.url + "/cpu", 16, self.seconds).rps for _ in range(self.rounds))
                sweep[count] = {"pss_mb": round(server.pss_mb(), 1), "cpu_rps": round(rps)}
        with servers.running(servers.bare_gunicorn, project, venv) as bare:
            wrk(bare.url + "/cpu", 16, max(1.0, self.seconds / 2))
            sweep["bare"] = {"pss_mb": round(bare.pss_mb(), 1)}
        return sweep

    def chaos(self, duration: float, every: float) -> dict:
        """Steady load while a random worker is SIGKILLed every `every` seconds."""
        project, venv, package = self.default
        with servers.running(servers.cluster, project, venv, package) as server:
            board = servers.board_of(server, package)
            configured = board.master()[1]
            result = {}
            load = threading.Thread(target=lambda: result.update(run=wrk(server.url + "/cpu", 32, duration)))
            load.start()
            recoveries = []
            deadline = time.monotonic() + duration - every
            while time.monotonic() < deadline:
                time.sleep(every)
                recoveries.append(_kill_and_time_replacement(board, configured))
            load.join()
        run = result["run"]
        failed = run.errors + run.timeouts + run.non_2xx
        return {
            "requests": run.requests,
            "failed": failed,
            "success_ratio": round(1 - failed / max(1, run.requests + run.errors + run.timeouts), 5),
            "kills": len(recoveries),
            "replacement_serving_s": {
                "median": round(statistics.median(recoveries), 3),
                "max": round(max(recoveries), 3),
            },
        }

    def graceful_stop(self, load_seconds: float) -> dict:
        """SIGTERM in the middle of load: count requests accepted but never answered."""
        project, venv, package = self.default
        server = servers.cluster(project, venv, package)
        with SteadyClient("127.0.0.1", server.port, "/io", threads=32) as client:
            time.sleep(load_seconds)
            stopped_at = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            server.process.wait(60)
            exit_seconds = time.monotonic() - stopped_at
        exit_code = server.stop()
        outcomes = client.outcomes
        return {
            "answered": outcomes.ok,
            "dropped_after_accept": outcomes.dropped,
            "refused_after_stop": outcomes.refused,
            "other": outcomes.other[:5],
            "exit_code": exit_code,
            "exit_seconds": round(exit_seconds, 2),
            "graceful_timeout_s": 10,
        }

    def startup(self) -> dict:
        """Seconds from start to the first /health 200, bare gunicorn and the cluster alternated."""
        project, venv, package = self.default
        times = {"bare gunicorn": [], "cluster (gthread)": []}
        for _ in range(self.rounds):
            for name, factory, args in (
                ("bare gunicorn", servers.bare_gunicorn, (project, venv)),
                ("cluster (gthread)", servers.cluster, (project, venv, package)),
            ):
                server = factory(*args)
                times[name].append(server.startup_seconds)
                server.stop()
        return {name: round(statistics.median(values), 3) for name, values in times.items()}


def _median_result(results) -> dict:
    middle = sorted(results, key=lambda result: result.rps)[len(results) // 2]
    return asdict(middle)


def _kill_and_time_replacement(board, configured: int, timeout: float = 30) -> float:
    """SIGKILL a random worker; seconds until its replacement is ready to serve.

    A worker joins the board once gunicorn has booted it, right before it
    starts accepting connections.
    """
    victims = board.workers()
    victim = random.choice(victims)
    killed_at = time.monotonic()
    os.kill(victim.pid, signal.SIGKILL)
    while time.monotonic() - killed_at < timeout:
        if len(board.workers()) == configured and victim.pid not in {slot.pid for slot in board.workers()}:
            return time.monotonic() - killed_at
        time.sleep(0.005)
    raise RuntimeError("the killed worker was not replaced")
