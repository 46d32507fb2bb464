"""The servers being compared, each started from a generated project on a free port."""

import contextlib
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

CGROUP_MEMORY = Path("/sys/fs/cgroup/memory")
# Everything allowed: the benchmark measures throughput, not the rate limiter's verdicts.
UNLIMITED = {"RATE_LIMIT": "1000000000/second"}
STARTUP_DEADLINE = 60.0
# gunicorn gthread at the cluster's sizing serving the same app, with none of the cluster's workers or hooks.
PLAIN_GTHREAD = "gunicorn gthread (no cluster)"
# The app every server serves: the project's own, with the benchmark routes; with /db/<id> too in postgres projects.
BENCH_APP = "bench_routes:app"
DATABASE_APP = "bench_db_routes:app"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """One server process (and its children), started in its own process group."""

    def __init__(
        self,
        name: str,
        project: Path,
        venv: Path | None,
        command: list[str],
        env: dict | None = None,
        memory_limit_mb: int | None = None,
    ):
        self.name = name
        self.project = project
        self.port = free_port()
        self.runtime_dir = tempfile.mkdtemp(prefix="bench-")
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in ("WEB_CONCURRENCY", "ENABLE_CLUSTERING", "PORT")},
            **UNLIMITED,
            "PORT": str(self.port),
            "PATH": f"{venv / 'bin'}:{os.environ['PATH']}" if venv else os.environ["PATH"],
            "XDG_RUNTIME_DIR": self.runtime_dir,
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.log = open(Path(self.runtime_dir) / "server.log", "w+")  # noqa: SIM115 (closed in stop)
        self.cgroup = memory_cgroup(f"bench-{self.port}", memory_limit_mb) if memory_limit_mb else None
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [part.replace("{port}", str(self.port)) for part in command],
            cwd=project,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # Inside the replica-sized cgroup before exec, so every worker it forks is too.
            preexec_fn=(lambda: (self.cgroup / "cgroup.procs").write_text(str(os.getpid()))) if self.cgroup else None,
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

    def processes(self) -> list[psutil.Process]:
        root = psutil.Process(self.process.pid)
        return [root, *root.children(recursive=True)]

    def cpu_seconds(self) -> float:
        """CPU time (user + system) of the master and all its workers so far, including workers already reaped."""
        total = 0.0
        for process in self.processes():
            with contextlib.suppress(psutil.Error):  # a worker that just exited
                times = process.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
        return total

    def pss_mb(self) -> float:
        """Proportional set size of the master and all its workers: shared pages counted once."""
        total = 0
        for process in self.processes():
            with contextlib.suppress(psutil.Error):  # a worker that just exited
                total += process.memory_full_info().pss
        return total / 2**20

    def log_lines(self) -> int:
        """Lines the server has written to stdout and stderr so far."""
        self.log.flush()
        with open(self.log.name, "rb") as log:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: log.read(1 << 20), b""))

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
        deadline = time.monotonic() + 5
        while self.cgroup and self.cgroup.exists() and time.monotonic() < deadline:
            try:
                self.cgroup.rmdir()
            except OSError:  # its last processes are still exiting
                time.sleep(0.05)
        return self.process.returncode

    def cgroup_figures(self) -> dict | None:
        """The kernel's view of the replica-sized cgroup: peak memory and OOM kills."""
        if not self.cgroup:
            return None
        oom = dict(line.split() for line in (self.cgroup / "memory.oom_control").read_text().splitlines())
        return {
            "limit_mb": int((self.cgroup / "memory.limit_in_bytes").read_text()) // 2**20,
            "peak_mb": round(int((self.cgroup / "memory.max_usage_in_bytes").read_text()) / 2**20, 1),
            "oom_kills": int(oom.get("oom_kill", 0)),
        }


def machine_busy_seconds() -> float:
    """CPU time every process on the machine has used since boot (all cores): /proc/stat less idle and iowait."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]  # guest time is already within user
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def memory_cgroup(name: str, limit_mb: int) -> Path | None:
    """A cgroup v1 memory group of `limit_mb`, like a Railway replica; None where we may not make one."""
    group = CGROUP_MEMORY / name
    try:
        group.mkdir(exist_ok=True)
        (group / "memory.limit_in_bytes").write_text(str(limit_mb * 2**20))
    except OSError:
        return None
    return group


def cluster(
    project: Path,
    venv: Path,
    package: str,
    name: str = "cluster",
    gunicorn_args=(),
    memory_limit_mb=None,
    app: str = BENCH_APP,
    **env,
) -> Server:
    """The generated project's own start command, serving the benchmark routes, every worker up.

    `gunicorn_args` (e.g. `--threads 16`) override what the project's sizing chose.
    """
    command = ["python", "-m", "railkit.cluster", "serve", app, *gunicorn_args]
    server = Server(name, project, venv, command, env, memory_limit_mb)
    # Measure the steady state: connections made while only the first worker
    # is up would all be served by it.
    board = board_of(server, package)
    deadline = time.monotonic() + STARTUP_DEADLINE
    while len(board.workers()) < board.master()[1]:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name}: not every worker started")
        time.sleep(0.01)
    return server


def bare_gunicorn(project: Path, venv: Path, memory_limit_mb=None, app: str = BENCH_APP, **env) -> Server:
    """What Railway runs without this template: gunicorn's defaults, one sync worker."""
    command = ["gunicorn", "--config", "/dev/null", "--bind", "127.0.0.1:{port}", app]
    return Server("bare gunicorn", project, venv, command, env, memory_limit_mb)


def project_sizing(project: Path, venv: Path, package: str) -> tuple[int, int]:
    """The workers and threads the generated project's own sizing chooses on this machine."""
    code = (
        "from railkit.cluster.sizing import size_cluster; from railkit.settings import load_settings_or_exit; "
        "size = size_cluster(load_settings_or_exit()); print(size.workers, size.threads)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("WEB_CONCURRENCY", "ENABLE_CLUSTERING")}
    output = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code], cwd=project, env=env, check=True, capture_output=True, text=True
    ).stdout.split()
    return int(output[0]), int(output[1])


def plain_gthread(project: Path, venv: Path, package: str) -> Server:
    """gunicorn's own gthread worker at the project's sizing, without the template's cluster: gthread's ceiling here."""
    workers, threads = project_sizing(project, venv, package)
    command = [
        "gunicorn", "--config", "/dev/null", "--bind", "127.0.0.1:{port}", "--worker-class", "gthread",
        "--workers", str(workers), "--threads", str(threads), "bench_routes:app",
    ]  # fmt: skip
    return Server(PLAIN_GTHREAD, project, venv, command)


def flask_dev_server(project: Path, venv: Path) -> Server:
    """`flask run`: Flask's threaded development server."""
    command = ["flask", "--app", "bench_routes:app", "run", "--port", "{port}"]
    return Server("flask run", project, venv, command)


NODE_DIR = Path(__file__).with_name("node")


def install_node_cluster() -> str | None:
    """`npm ci` the Node cluster's pinned packages; the reason when Node cannot run here."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "node and npm are not installed (apt-get install nodejs npm)"
    lock = NODE_DIR / "package-lock.json"
    installed = NODE_DIR / "node_modules" / ".package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        run = subprocess.run(
            ["npm", "ci", "--silent", "--no-audit", "--no-fund"], cwd=NODE_DIR, capture_output=True, text=True
        )
        if run.returncode != 0:
            return f"npm ci failed: {run.stderr.strip()[-300:]}"
    return None


def node_cluster(**env) -> Server:
    """The seed's stack: Node's cluster module, one express worker per core (tests/bench/node)."""
    server = Server("node (express cluster)", NODE_DIR, None, ["node", "cluster.js"], env)
    workers = int(env.get("WEB_CONCURRENCY", os.cpu_count() or 1))
    deadline = time.monotonic() + STARTUP_DEADLINE
    while len(server.processes()) < 1 + workers:  # like cluster(): every worker up
        if time.monotonic() > deadline:
            raise RuntimeError("node: not every worker started")
        time.sleep(0.01)
    time.sleep(0.2)  # the last worker forked; give it time to listen
    return server


@contextmanager
def running(server_factory, *args, **kwargs):
    server = server_factory(*args, **kwargs)
    try:
        yield server
    finally:
        server.stop()


def board_of(server: Server, package: str):
    """The cluster's scoreboard, read with the generated project's own module.

    Looked for in the server's own runtime folder: the platform names its
    folders after the project it was first imported for, and one bench
    process reads the boards of several projects.
    """
    sys.path.insert(0, str(server.project))
    try:
        runtime = __import__("railkit.cluster.runtime", fromlist=["find_live_board"])
    finally:
        sys.path.pop(0)
    for board_file in Path(server.runtime_dir).glob(f"*/{runtime.FILE_NAME}"):
        with contextlib.suppress(OSError, ValueError):
            board = runtime.Board.open(board_file)
            if runtime.master_is_alive(board):
                return board
    return None
