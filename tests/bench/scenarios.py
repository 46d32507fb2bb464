"""Each measurement the seed's claims need, run against real servers."""

import contextlib
import os
import random
import signal
import statistics
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass

from . import attacks, database, redeploy, servers, users
from .load import LoadResult, SteadyClient, wrk
from .otlp_sink import OtlpSink
from .profiles import Profile, workers_for

# The plan the default project is generated for (cookiecutter.json's first choice): its replica size and body limit.
DEFAULT_PLAN = "hobby"

# The switch the metrics layer honours to turn itself off (issue 12: its cost is measured with and without).
METRICS_OFF = {"METRICS": "off"}
# The share of traces the tracing scenario's sampled runs keep: what a replica serving thousands of requests
# a second needs to stay under Railway's 1,000 spans per 10 s.
TRACES_SAMPLED = "0.01"


class Bench:
    """The generated projects under test (worker class -> (project dir, venv, package)) and the profile.

    `database_projects`: the same, generated with database=postgres; `python_projects`: Python version -> a
    gthread project generated for that version, beside the default's; `tracing_project`: a gthread project
    generated with use_tracing=yes.
    """

    def __init__(
        self,
        projects: dict,
        profile: Profile,
        node_missing: str | None = None,
        database_projects: dict | None = None,
        python_projects: dict | None = None,
        tracing_project: tuple | None = None,
    ):
        self.projects = projects
        self.profile = profile
        self.node_missing = node_missing
        self.database_projects = database_projects or {}
        self.python_projects = python_projects or {}
        self.tracing_project = tracing_project
        self.cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

    @property
    def default(self):
        return self.projects["gthread"]

    def start_cluster(self, worker_class: str = "gthread", gunicorn_args=(), **env) -> servers.Server:
        project, venv, package = self.projects[worker_class]
        return servers.cluster(project, venv, package, f"cluster ({worker_class})", gunicorn_args, **env)

    def start_bare(self, **env) -> servers.Server:
        project, venv, _ = self.default
        return servers.bare_gunicorn(project, venv, **env)

    def contenders(self) -> dict:
        """How to start each server compared in the throughput runs."""
        project, venv, _ = self.default
        found = {
            "bare gunicorn": self.start_bare,
            "flask run": lambda: servers.flask_dev_server(project, venv),
            servers.PLAIN_GTHREAD: lambda: servers.plain_gthread(*self.default),
            **{f"cluster ({name})": (lambda name=name: self.start_cluster(name)) for name in self.projects},
        }
        if not self.node_missing:
            found["node (express cluster)"] = servers.node_cluster
        return found

    def throughput(self) -> dict:
        """Requests/s, latency and CPU of each server for each load, over alternated rounds.

        Each run has a freshly started server to itself: an overloaded server
        keeps working off the queued requests of a run long after it ends.
        Every other round runs the servers in reverse order, so a machine that
        slows down during a round does not favour whoever runs first, and each
        ratio to bare gunicorn is the median of the rounds' ratios, each to the
        bare run of its own round: a slow spell weighs on both sides of it.
        """
        return {
            load: _summary(self._alternated_rounds(self.contenders(), path, connections, rounds))
            for load, path, connections, rounds in self.profile.loads
        }

    def _alternated_rounds(self, contenders: dict, path: str, connections: int, rounds: int, postgres=None) -> dict:
        """Each contender's runs, one per round, the order reversed every other round (throughput's docstring)."""
        order = list(contenders.items())
        samples = {name: [] for name in contenders}
        for round_ in range(rounds):
            for name, start in order if round_ % 2 == 0 else reversed(order):
                run = self._one_run(start, path, connections, warmup=self.profile.warmup_seconds, postgres=postgres)
                samples[name].append(run)
        return samples

    def database(self) -> dict:
        """One indexed SELECT by primary key per request: bare gunicorn, each cluster and Node, on one Postgres.

        Measured as throughput's loads are (alternated rounds, paired ratios);
        every server reads the same table of a throwaway Postgres, each Python
        one from a project generated with database=postgres.
        """
        if not self.database_projects:
            return {"skipped": "no project generated with database=postgres"}
        first = next(iter(self.database_projects.values()))
        missing = database.missing(first[0])
        if missing:
            return {"skipped": missing}
        connections = self.profile.database_connections
        with database.seeded_postgres(first[0]) as postgres:
            # One replica: the budget would otherwise share the server's connections among the plan's replicas.
            env = {"DATABASE_URL": postgres.server.url, "DATABASE_REPLICAS": "1"}
            contenders = self._database_contenders(env)
            pooled = postgres.pooled_env(env)
            if pooled:  # Railway's PgBouncer in front (transaction mode): the gthread cluster, through it
                key = "gthread" if "gthread" in self.database_projects else next(iter(self.database_projects))
                project, venv, package = self.database_projects[key]
                name = "cluster via PgBouncer"
                app = servers.DATABASE_APP
                contenders[name] = lambda: servers.cluster(project, venv, package, name, app=app, **pooled)
            samples = self._alternated_rounds(contenders, "/db/1", connections, self.profile.database_rounds, postgres)
            return {
                "postgres": database.version(postgres),
                "rows": database.ROWS,
                "connections": connections,
                "servers": _summary(samples),
            }

    def _database_contenders(self, env: dict) -> dict:
        """How to start each server of the database scenario: bare gunicorn on the gthread postgres project."""
        bare_project, bare_venv, _ = self.database_projects.get("gthread", next(iter(self.database_projects.values())))
        found = {
            "bare gunicorn": lambda: servers.bare_gunicorn(bare_project, bare_venv, app=servers.DATABASE_APP, **env)
        }
        for worker_class, (project, venv, package) in self.database_projects.items():
            name = f"cluster ({worker_class})"
            found[name] = lambda name=name, project=project, venv=venv, package=package: servers.cluster(
                project, venv, package, name, app=servers.DATABASE_APP, **env
            )
        if not self.node_missing:
            found["node (express cluster)"] = lambda: servers.node_cluster(**env)
        return found

    def _one_run(
        self,
        start,
        path: str,
        connections: int,
        seconds: float | None = None,
        warmup: float = 0,
        postgres: "database.SeededPostgres | None" = None,
    ) -> "Run":
        """A run on a quiet machine: one that other processes disturbed is run again once they calm down.

        A busy neighbour takes its cores from a cluster that wants both, hardly
        any from bare gunicorn's single process, so it biases every ratio.
        """
        runs = [self._run_once(start, path, connections, seconds, warmup, postgres)]
        while runs[-1].others_cores > QUIET_CORES and len(runs) <= self.profile.quiet_repeats:
            _wait_for_quiet()
            runs.append(self._run_once(start, path, connections, seconds, warmup, postgres))
        kept = min(runs, key=lambda run: run.others_cores)
        kept.repeats = len(runs) - 1
        return kept

    def _run_once(
        self, start, path: str, connections: int, seconds: float | None, warmup: float, postgres=None
    ) -> "Run":
        """One run against a fresh server.

        With `postgres` (the database scenario's), wrk asks through its script
        and Postgres's CPU is counted apart: work done for the server, not a
        disturbance of the run.
        """
        server = start()
        try:
            if warmup:  # unmeasured: Node's JIT needs a few seconds of load to reach its pace
                wrk(server.url + path, min(connections, WARMUP_CONNECTIONS), warmup)
            _first_answer(server.url + path)
            machine_before, server_before = servers.machine_busy_seconds(), server.cpu_seconds()
            postgres_before = postgres.cpu_seconds() if postgres else 0.0
            started = time.monotonic()
            script = postgres.script if postgres else None
            load = wrk(server.url + path, connections, seconds or self.profile.seconds, script=script)
            elapsed = time.monotonic() - started
            server_cpu = server.cpu_seconds() - server_before
            postgres_cpu = postgres.cpu_seconds() - postgres_before if postgres else 0.0
            others = servers.machine_busy_seconds() - machine_before - server_cpu - postgres_cpu - load.wrk_cpu_s
            return Run(load, elapsed, server_cpu, max(0.0, others), postgres_cpu_s=postgres_cpu)
        finally:
            server.stop(signal.SIGKILL)

    def sizing_sweep(self) -> dict:
        """Workers x threads per worker class: /cpu at 16 connections and /io at 200.

        One run per cell, alternated with a run of bare gunicorn (/cpu) and of
        `flask run` (/io); ratios are to the median of those baseline runs, which
        a single noisy baseline cannot swing.
        """
        project, venv, _ = self.default
        cells = [("gthread", rule, threads) for rule, threads in self.profile.gthread_grid]
        cells += [
            (worker_class, rule, 1) for worker_class, rules in self.profile.other_workers.items() for rule in rules
        ]
        rows, bare_rps, bare_us, flask_rps, made = [], [], [], [], []
        for worker_class, rule, threads in cells:
            if worker_class not in self.projects:
                continue
            workers = workers_for(rule, self.cpus)
            args = ("--threads", str(threads)) if worker_class == "gthread" else ()

            def start(worker_class=worker_class, args=args, workers=workers):
                return self.start_cluster(worker_class, args, WEB_CONCURRENCY=str(workers))

            cpu = self._one_run(start, "/cpu", 16)
            io = self._one_run(start, "/io", 200)
            made += [cpu, io]
            if self.profile.sweep_baselines:
                bare = self._one_run(self.start_bare, "/cpu", 16)
                flask = self._one_run(lambda: servers.flask_dev_server(project, venv), "/io", 200)
                bare_rps.append(bare.rps)
                bare_us.append(bare.us_per_request)
                flask_rps.append(flask.rps)
                made += [bare, flask]
            rows.append(
                {
                    "worker_class": worker_class,
                    "rule": rule,
                    "workers": workers,
                    "threads": threads,
                    "cpu_rps": round(cpu.rps),
                    "cpu_p99_ms": cpu.load.p99_ms,
                    "cpu_us_per_request": round(cpu.us_per_request),
                    "io_rps": round(io.rps),
                    "io_p99_ms": io.load.p99_ms,
                    "io_errors": io.load.errors + io.load.timeouts + io.load.non_2xx,
                }
            )
        bare = statistics.median(bare_rps) if bare_rps else None
        flask = statistics.median(flask_rps) if flask_rps else None
        for row in rows:
            row["cpu_vs_bare"] = round(row["cpu_rps"] / bare, 2) if bare else None
            row["io_vs_flask"] = round(row["io_rps"] / flask, 2) if flask else None
        return {
            "cpus": self.cpus,
            "bare_cpu_rps": bare,
            "bare_cpu_us_per_request": round(statistics.median(bare_us)) if bare_us else None,
            "flask_io_rps": flask,
            "others_cores_max": round(max(run.others_cores for run in made), 2) if made else None,
            "repeated_runs": sum(run.repeats for run in made),
            "rows": rows,
        }

    def memory(self) -> dict:
        """PSS of the whole cluster (master and workers) for each worker count, after load, per worker class.

        Per worker class of the default Python's projects, then gthread on each
        other Python generated for the bench (keyed "gthread, Python 3.13").
        """
        measured = {worker_class: (worker_class, self.projects[worker_class])
                    for worker_class in self.profile.memory_classes if worker_class in self.projects}  # fmt: skip
        measured |= {
            f"gthread, Python {version}": ("gthread", found) for version, found in self.python_projects.items()
        }
        figures = {}
        for label, (worker_class, (project, venv, package)) in measured.items():
            by_count = {}
            for count in self.profile.memory_workers:
                server = servers.cluster(project, venv, package, label, WEB_CONCURRENCY=str(count))
                try:
                    served = _load_every_worker(server, package)
                    by_count[str(count)] = {
                        "pss_mb": round(server.pss_mb(), 1),
                        "worker_uss_mb": [round(p.memory_full_info().uss / 2**20, 1) for p in server.processes()[1:]],
                        "worker_requests": served,
                    }
                finally:
                    server.stop()
            counts = sorted(int(count) for count in by_count)
            one, most = by_count[str(counts[0])]["pss_mb"], by_count[str(counts[-1])]["pss_mb"]
            per_extra = (most - one) / (counts[-1] - counts[0]) if len(counts) > 1 else 0.0
            figures[label] = {
                "worker_class": worker_class,
                "python": _python_version(venv),
                "by_workers": by_count,
                "per_extra_worker_mb": round(per_extra, 2),
                "per_extra_worker_share": round(per_extra / one, 3),
            }
        server = self.start_bare()
        try:
            wrk(server.url + "/cpu", 16, 1)
            figures["bare gunicorn"] = {"pss_mb": round(server.pss_mb(), 1)}
        finally:
            server.stop()
        return figures

    def metrics_cost(self) -> dict:
        """/cpu throughput of the default cluster with its metrics on and off: the median of paired rounds' costs."""
        samples = {"on": [], "off": []}
        states = [("on", {}), ("off", METRICS_OFF)]
        served = {state: self._metrics_status(env) for state, env in states}
        for round_number in range(self.profile.rounds):
            # Paired as the throughput rounds are, the order reversed every other round.
            for state, env in states if round_number % 2 == 0 else states[::-1]:
                run = self._one_run(
                    lambda env=env: self.start_cluster(**env), "/cpu", 16, warmup=self.profile.warmup_seconds
                )
                samples[state].append(run.rps)
        on, off = statistics.median(samples["on"]), statistics.median(samples["off"])
        costs = [1 - on_rps / off_rps for on_rps, off_rps in zip(samples["on"], samples["off"], strict=True) if off_rps]
        if served["on"] != 200:
            note = f"/metrics answered {served['on']}: this project has no metrics yet, both runs are the same app"
        elif served["off"] == 200:
            note = f"{METRICS_OFF} did not turn metrics off: both runs had them"
        else:
            note = "metrics on versus off"
        return {
            "on_rps": round(on),
            "off_rps": round(off),
            "cost": round(statistics.median(costs), 3) if costs else None,
            "metrics_status": served,
            "note": note,
        }

    def tracing_cost(self) -> dict:
        """/cpu throughput of a project with traces: off (no endpoint), every request traced, and 1% sampled.

        The same project each time, exporting to a local receiver; paired
        rounds as the metrics cost's, each ratio to the untraced run of its round.
        """
        if not self.tracing_project:
            return {"skipped": "no project generated with use_tracing=yes"}
        project, venv, package = self.tracing_project
        with OtlpSink() as sink:
            traced = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
            sampled = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": TRACES_SAMPLED}
            states = [("off", {}), ("every request", traced), ("1% sampled", {**traced, **sampled})]
            samples = {state: [] for state, _ in states}
            for round_number in range(self.profile.rounds):
                for state, env in states if round_number % 2 == 0 else states[::-1]:
                    name = f"cluster (gthread, traces {state})"
                    run = self._one_run(
                        lambda name=name, env=env: servers.cluster(project, venv, package, name, **env),
                        "/cpu",
                        16,
                        warmup=self.profile.warmup_seconds,
                    )
                    samples[state].append(run)
            exports, exported_bytes = sink.exports, sink.bytes
        figures = {}
        for state, runs in samples.items():
            figures[state] = {
                "rps": round(statistics.median(run.rps for run in runs)),
                "us_per_request": round(statistics.median(run.us_per_request for run in runs)),
            }
            if state != "off":
                pairs = list(zip(runs, samples["off"], strict=True))
                figures[state]["vs_off"] = round(statistics.median(run.rps / off.rps for run, off in pairs), 3)
                extra = statistics.median(run.us_per_request - off.us_per_request for run, off in pairs)
                figures[state]["extra_us_per_request"] = round(extra)
        return {"route": "/cpu, 16 connections", "runs": figures, "exports": exports, "exported_bytes": exported_bytes}

    def _metrics_status(self, env: dict) -> int:
        """What /metrics answers with `env`: 200 when metrics are on."""
        server = self.start_cluster(**env)
        try:
            return _status(server.url + "/metrics")
        finally:
            server.stop(signal.SIGKILL)

    def attacks(self) -> dict:
        """Each attack against each server, inside a cgroup of the plan's replica memory where we may make one."""
        from ..support import PLANS

        plan = PLANS[DEFAULT_PLAN]
        figures = {}
        for attack in attacks.ATTACKS:
            for name in self.profile.attack_servers:
                if name == "bare gunicorn":
                    server = self.start_bare(memory_limit_mb=plan["memory_mb"])
                else:
                    server = self.start_cluster(name, memory_limit_mb=plan["memory_mb"])
                    name = f"cluster ({name})"
                try:
                    result = attacks.run(
                        attack,
                        server,
                        self.profile.attack_seconds,
                        self.profile.bomb_mb or plan["max_body_mb"],
                        self.profile.attack_scale,
                    )
                    result["cgroup"] = server.cgroup_figures()
                finally:
                    server.stop(signal.SIGKILL)
                figures.setdefault(attack, {})[name] = result
        return figures

    def concurrent_users(self) -> dict:
        """Kept-alive users asking every few seconds, per worker class and for Node, each server under 1,024 files."""
        figures = {}
        for name in self.profile.users_servers:
            if name == "node":
                if self.node_missing:
                    continue
                start, label = servers.node_cluster, "node (express cluster)"
            elif name in self.projects:
                start, label = (lambda name=name: self.start_cluster(name)), f"cluster ({name})"
            else:
                continue
            with users.soft_files_limit(users.SOFT_FILES):
                server = start()
            try:
                figures[label] = users.run(
                    server, self.profile.users, self.profile.users_interval, self.profile.users_seconds
                )
            finally:
                server.stop(signal.SIGKILL)
        return figures

    def redeploys(self) -> dict:
        """Failed requests through nginx across a redeploy, in both orders, for the cluster and bare gunicorn."""
        missing = redeploy.nginx_missing()
        if missing:
            return {"skipped": missing}
        figures = {}
        for name in self.profile.redeploy_servers:
            start = self.start_bare if name == "bare gunicorn" else (lambda name=name: self.start_cluster(name))
            label = name if name == "bare gunicorn" else f"cluster ({name})"
            for order in redeploy.ORDERS[: self.profile.redeploy_orders]:
                figures.setdefault(order, {})[label] = redeploy.redeploy(start, order, self.profile.redeploy_seconds)
        return figures

    def chaos(self) -> dict:
        """Steady load while a random worker is SIGKILLed every 2 seconds."""
        duration, every = self.profile.chaos_seconds, 2.0
        _, _, package = self.default
        with servers.running(self.start_cluster) as server:
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

    def graceful_stop(self) -> dict:
        """SIGTERM in the middle of load: count requests accepted but never answered."""
        server = self.start_cluster(SHUTDOWN_DELAY="0")
        with SteadyClient("127.0.0.1", server.port, "/io", threads=32) as client:
            time.sleep(1.0 if self.profile.rounds == 1 else 3.0)
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
        times = {"bare gunicorn": [], "cluster (gthread)": []}
        for _ in range(self.profile.rounds):
            for name, factory in (("bare gunicorn", self.start_bare), ("cluster (gthread)", self.start_cluster)):
                server = factory()
                times[name].append(server.startup_seconds)
                server.stop()
        return {name: round(statistics.median(values), 3) for name, values in times.items()}


# Cores other processes may use during a run before it counts as disturbed and is run again (a quiet machine: ~0.02;
# how many times: the profile's quiet_repeats), and how long to wait for the machine to calm down first.
QUIET_CORES = 0.1
QUIET_WAIT_SECONDS = 20.0


def _wait_for_quiet() -> None:
    """Wait (up to QUIET_WAIT_SECONDS) for a second in which the machine is idle but for our own process."""
    deadline = time.monotonic() + QUIET_WAIT_SECONDS
    while time.monotonic() < deadline:
        before = servers.machine_busy_seconds()
        time.sleep(1.0)
        if servers.machine_busy_seconds() - before <= QUIET_CORES:
            return


# Requests each worker must have served before its memory is read: an idle worker flatters the figure.
MEMORY_MIN_REQUESTS = 100


def _load_every_worker(server: servers.Server, package: str, rounds: int = 5) -> list[int]:
    """Touch what serving touches, both routes, until every worker has served its share; requests per worker."""
    board = servers.board_of(server, package)
    before = {slot.pid: slot.requests for slot in board.workers()}
    for _ in range(rounds):
        wrk(server.url + "/cpu", 16, 1)
        wrk(server.url + "/io", 200, 1)
        served = {slot.pid: slot.requests - before.get(slot.pid, 0) for slot in board.workers()}
        if len(served) == board.master()[1] and min(served.values()) >= MEMORY_MIN_REQUESTS:
            return sorted(served.values())
    raise RuntimeError(f"{server.name}: some worker served fewer than {MEMORY_MIN_REQUESTS} requests: {served}")


# A warm-up exercises the code, not the queues: at most this many connections.
WARMUP_CONNECTIONS = 16
# How long the route's first answer may take: behind a warm-up's backlog, or a first connection to the database.
FIRST_ANSWER_SECONDS = 60


def _first_answer(url: str) -> None:
    """Wait for the measured route to answer once, so that the run counts answers, not the server's start.

    A warm-up at full width would leave an overloaded server (one sync worker
    on /io: 20 requests a second) a backlog of abandoned connections to serve
    during the measured run, which then counted nothing; without a warm-up, a
    1 s run (`--smoke`) on a busy machine could end before the first database
    connection through PgBouncer was made. This request is answered once
    either is behind it.
    """
    with contextlib.suppress(OSError):
        urllib.request.urlopen(url, timeout=FIRST_ANSWER_SECONDS).close()


def _python_version(venv) -> str:
    """The full version of a venv's Python, e.g. 3.14.2."""
    code = "import platform; print(platform.python_version())"
    return subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True).stdout.strip()


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


@dataclass
class Run:
    """One wrk run against a fresh server, and the CPU time each party used meanwhile."""

    load: LoadResult
    seconds: float
    server_cpu_s: float  # the master and all its workers (every process of node's cluster)
    others_cpu_s: float  # the rest of the machine: other users, the bench itself, the hypervisor's steal
    repeats: int = 0  # disturbed runs made again before this one
    postgres_cpu_s: float = 0.0  # the database scenario's Postgres, serving this server's queries

    @property
    def others_cores(self) -> float:
        return self.others_cpu_s / self.seconds

    @property
    def rps(self) -> float:
        return self.load.rps

    @property
    def us_per_request(self) -> float:
        return self.server_cpu_s / max(1, self.load.requests) * 1e6


def _summary(samples: dict) -> dict:
    """Each server's median run (by req/s), its spread, its CPU and its ratios to bare gunicorn and to Node."""
    summary = {}
    for name, runs in samples.items():
        median_run = sorted(runs, key=lambda run: run.rps)[len(runs) // 2]
        summary[name] = {
            **asdict(median_run.load),
            "rounds": len(runs),
            "rps_min": min(run.rps for run in runs),
            "rps_max": max(run.rps for run in runs),
            "us_per_request": round(statistics.median(run.us_per_request for run in runs)),
            "server_cores": round(statistics.median(run.server_cpu_s / run.seconds for run in runs), 2),
            "wrk_cores": round(statistics.median(run.load.wrk_cpu_s / run.seconds for run in runs), 2),
            "others_cores_max": round(max(run.others_cores for run in runs), 2),
            "repeated_runs": sum(run.repeats for run in runs),
        }
        if any(run.postgres_cpu_s for run in runs):
            summary[name]["postgres_cores"] = round(
                statistics.median(run.postgres_cpu_s / run.seconds for run in runs), 2
            )
        for key, baseline in (("vs_bare", "bare gunicorn"), ("vs_node", "node (express cluster)")):
            if baseline in samples and name != baseline:
                pairs = zip(runs, samples[baseline], strict=True)
                ratios = [run.rps / base.rps for run, base in pairs if base.rps]
                if not ratios:
                    continue  # the baseline served nothing in any round: no ratio to give
                # Three decimals: a goal such as 1.8x is judged on the ratio, not on its rounding for print.
                summary[name][key] = [round(statistics.median(ratios), 3), round(min(ratios), 3), round(max(ratios), 3)]
    return summary


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
