"""granian under the platform (server=granian): its start, the guard on its internals, respawns that lose nothing.

The cluster's other promises run here from the shared modules (test_cluster,
test_redeploy, test_metrics, ...): a granian project's servers.Server starts
`python -m railkit.cluster serve`. These are the promises granian keeps
differently, or only because the platform makes it.
"""

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from railkit.cluster import limits
from railkit.settings import EXIT_BAD_CONFIG

from .servers import CLUSTER_COMMAND, FIXTURE_APP, PROJECT_ROOT, message_starts, wait_until
from .test_import_graph import _graph, _inside

pytestmark = [pytest.mark.server("granian"), pytest.mark.cluster]

# Runs the start command in-process after breaking one granian internal, the way a changed granian would look.
BREAK_AND_START = """
import sys
import granian.server.common as common, granian.server.mp as mp
setattr({owner}, {attribute!r}, lambda *args, **kwargs: None)
from railkit.cluster.__main__ import main
sys.exit(main(["serve", {app!r}]))
"""


def test_the_start_command_serves_railways_healthcheck_with_granian(serve):
    """railway.ts's start command, unchanged, starts granian: the deploy's healthcheck passes, every line is JSON."""
    server = serve({"WEB_CONCURRENCY": "2"}, command=[*CLUSTER_COMMAND, "serve"])
    status, headers, body = server.request("/health/ready", headers={"Host": "healthcheck.railway.app"})
    assert status == 200, body
    assert headers["Server"] == "granian"
    assert headers["Content-Type"] == "application/health+json"
    story = server.wait_for_log(message_starts("Master process starting cluster mode"))
    assert story["server"] == "granian"
    server.wait_for_log(message_starts("Worker 2 started"))
    assert server.wait_for_log(lambda log: log.get("logger", "").startswith("_granian")), "granian's own lines"
    assert len(server.logs) == len(server.lines), "a line on stdout was not JSON"
    assert all(set(log) >= {"message", "level"} for log in server.logs)


def test_this_granian_has_every_internal_the_platform_touches():
    from railkit.granian.compat import missing_internals

    assert missing_internals() == []


@pytest.mark.parametrize(
    ("owner", "attribute"),
    [("mp.MPServer", "_spawn_worker"), ("common.AbstractServer", "_serve"), ("mp.WorkerProcess", "terminate")],
)
def test_a_changed_granian_internal_refuses_the_start_in_one_json_line(owner, attribute):
    script = BREAK_AND_START.format(owner=owner, attribute=attribute, app=FIXTURE_APP)
    finished = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60
    )
    assert finished.returncode == EXIT_BAD_CONFIG, finished.stdout + finished.stderr
    [refusal] = [json.loads(line) for line in finished.stdout.splitlines() if '"error"' in line]
    assert refusal["message"].startswith("Refusing to start: granian")
    assert any(attribute in change for change in refusal["changed"]), refusal


def test_the_granian_side_never_imports_the_web_side():
    """Like the cluster, railkit.granian is the server side: the web side reads it only through the seam."""
    for module, imports in _graph().items():
        if _inside(module, "railkit.granian"):
            wrong = {i for i in imports if _inside(i, "railkit.web") or _inside(i, "railkit.seam")}
            assert not wrong, f"{module} imports {wrong}"


class FreshConnections:
    """Clients each sending one request per new connection, back to back: every failure kept (a reset, an EOF)."""

    def __init__(self, port: int, clients: int = 8, path: str = "/"):
        self.port, self.path = port, path
        self.running = True
        self.ok = 0
        self.failed: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]
        for thread in self.threads:
            thread.start()

    def _client(self):
        while self.running:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
            try:
                connection.request("GET", self.path, headers={"Connection": "close"})
                outcome = connection.getresponse().status
            except OSError as error:
                outcome = repr(error)
            finally:
                connection.close()
            with self.lock:
                if outcome == 200:
                    self.ok += 1
                else:
                    self.failed.append(str(outcome))

    def stop(self) -> tuple[int, list[str]]:
        self.running = False
        for thread in self.threads:
            thread.join(30)
        return self.ok, self.failed


@pytest.mark.load
def test_workers_replaced_under_load_lose_no_new_connection(serve):
    """granian alone binds a socket per worker, whose queue is reset when that worker stops (net.ipv4.tcp_migrate_req,
    which a Railway container cannot set, would move it): 57 of 9,573 requests on fresh connections failed through
    three replacements of both workers. Under the platform every worker accepts from one socket, whose queue outlives
    any of them; and a worker stopped alone stops accepting before granian's stop, which closes a connection accepted
    an instant before it and not read yet (up to 6 of 27,361 failed that way before it did).
    """
    server = serve({"WEB_CONCURRENCY": "2", "RATE_LIMIT": "off"})
    first = server.wait_for_workers(2)
    load = FreshConnections(server.port)
    try:
        wait_until(lambda: load.ok >= 200, message="steady load")
        replaced = set(first)
        for _ in range(3):
            before = server.worker_pids()
            server.signal(signal.SIGHUP)
            replaced |= wait_until(lambda b=before: (p := server.worker_pids()) and len(p) == 2 and not p & b and p)
            time.sleep(0.5)
    finally:
        ok, failed = load.stop()
    print(f"{ok} answered, {len(failed)} failed through three replacements of both workers")
    assert failed == [], f"{len(failed)} of {ok + len(failed)} failed: {sorted(set(failed))}"
    assert len(replaced) == 8, "every worker was replaced three times"
    # (A worker may also reach max_requests under this load: its retirement says so.)
    retired = [log for log in server.logs if "retired" in log.get("message", "") and "SIGHUP" in log["message"]]
    assert len(retired) == 6, retired


def test_a_local_proxy_is_trusted_and_its_ipv4_client_logged(serve):
    """The app's trust (FORWARDED_ALLOW_IPS): X-Forwarded-Proto from this host is believed, and the client named."""
    forwarded = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    env = {"ENABLE_CLUSTERING": "false", "ACCESS_LOG": "all", "RATE_LIMIT": "off"}
    trusting, wary = serve(env), serve({**env, "FORWARDED_ALLOW_IPS": "10.9.9.9"})
    assert "Strict-Transport-Security" in trusting.request("/", headers=forwarded)[1]
    assert "Strict-Transport-Security" not in wary.request("/", headers=forwarded)[1]
    # The dual-stack socket's ::ffff:127.0.0.1 is logged as the IPv4 address it is.
    for server, client in ((trusting, "203.0.113.9"), (wary, "127.0.0.1")):
        logged = server.wait_for_log(lambda line: line.get("path") == "/" and "client_ip" in line)
        assert logged["client_ip"] == client


def test_gunicorns_options_are_refused_in_one_json_line(serve):
    """`serve main:app --workers 3` would mean something to gunicorn; granian would ignore it silently."""
    server = serve({}, command=[*CLUSTER_COMMAND, "serve", FIXTURE_APP, "--workers", "3"], wait=False)
    assert server.wait_exit() == EXIT_BAD_CONFIG
    [refusal] = [log for log in server.logs if log["level"] == "error"]
    assert refusal["arguments"] == [FIXTURE_APP, "--workers", "3"]
    assert "granian" in refusal["message"]


@pytest.mark.load
def test_a_worker_is_retired_after_max_requests_while_its_replacement_serves(serve):
    """gunicorn's max_requests, kept by the supervisor: about 10,000 requests, then a graceful replacement."""
    server = serve({"WEB_CONCURRENCY": "1", "RATE_LIMIT": "off"})
    [first] = server.wait_for_workers(1)
    load = FreshConnections(server.port, clients=16)
    try:
        # Forked as soon as the first is asked to retire; the load stops there, before it nears its own count.
        replacement = server.wait_for_log(message_starts("Worker 2 started"), timeout=180)
    finally:
        ok, failed = load.stop()
    retired = server.wait_for_log(lambda log: "retired" in log.get("message", ""))
    assert retired["worker_pid"] == first and retired["status"] == "exit code 0"
    assert "max_requests" in retired["message"]
    assert ok >= limits.MAX_REQUESTS
    assert failed == [], failed
    assert server.wait_for_workers(1, without=first) == {replacement["worker_pid"]}


@pytest.mark.parametrize("signum", [signal.SIGUSR1, signal.SIGUSR2], ids=["SIGUSR1", "SIGUSR2"])
def test_gunicorns_other_signals_leave_the_cluster_serving(serve, signum):
    """Their default action ends a process: sent to the group, they would have killed the master and every worker."""
    server = serve({"WEB_CONCURRENCY": "2"})
    before = server.wait_for_workers(2)
    os.killpg(server.process.pid, signum)
    time.sleep(1)
    assert server.process.poll() is None
    assert server.worker_pids() == before
    assert server.request("/health")[0] == 200


def test_a_granian_project_without_granian_installed_is_refused_in_one_json_line():
    """A venv made from another lock (or by hand) lacks granian: one line naming the fix, not an import traceback."""
    script = (
        "import importlib.util, sys\n"
        "importlib.util.find_spec = lambda name, package=None: None  # as if granian were not installed\n"
        "from railkit.cluster.__main__ import main\n"
        "sys.exit(main(['serve']))\n"
    )
    finished = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60
    )
    assert finished.returncode == EXIT_BAD_CONFIG, finished.stdout + finished.stderr
    [refusal] = [json.loads(line) for line in finished.stdout.splitlines()]
    assert "granian is not installed" in refusal["message"]
    assert "Traceback" not in finished.stderr
