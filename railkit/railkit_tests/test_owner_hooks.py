"""Server hooks the owner defines in gunicorn.conf.py run after the platform's, never instead of them;
settings the owner overrides there, or on gunicorn's command line, are the ones the platform reports and sizes by.
"""

import json
import signal
import socket
import subprocess
import sys

import psutil
import pytest

from railkit import project

from .servers import CLUSTER_COMMAND, FIXTURE_APP, PROJECT_ROOT, free_port, message_starts, wait_until

if project.HAS_DATABASE:
    from railkit.db.testing import create_database, postgres  # noqa: F401 (a fixture)

pytestmark = pytest.mark.cluster

OWNER_HOOKS = '''

# The owner's own hooks, written the way gunicorn's documentation shows.
import os as _os

RESOURCES = {folder!r}


def post_fork(server, worker):
    """Open a per-worker resource (a connection pool, say)."""
    with open(_os.path.join(RESOURCES, f"{{_os.getpid()}}.opened"), "w") as marker:
        marker.write("opened")


def worker_exit(server, worker):
    with open(_os.path.join(RESOURCES, f"{{_os.getpid()}}.closed"), "w") as marker:
        marker.write("closed")


def when_ready(server):
    server.log.info("owner's when_ready ran")
'''


def test_owner_hooks_run_beside_the_platforms(serve, tmp_path):
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text((PROJECT_ROOT / "gunicorn.conf.py").read_text() + OWNER_HOOKS.format(folder=str(tmp_path)))
    command = [sys.executable, "-m", "gunicorn", "-c", str(conf), FIXTURE_APP]
    server = serve({"WEB_CONCURRENCY": "2"}, command=command)

    # The platform's hooks: the start story, its when_ready, every worker on the board, the workers' own lines.
    workers = server.wait_for_workers(2)
    assert server.wait_for_log(lambda log: log.get("message", "").startswith("Starting 2 workers"))
    assert server.wait_for_log(lambda log: log.get("message") == f"Listening on port {server.port}")
    for pid in workers:
        server.wait_for_log(lambda log, pid=pid: log.get("worker_pid") == pid and "started" in log["message"])
    # The owner's: a resource per worker, opened after the platform's post_fork, and their when_ready.
    wait_until(lambda: all((tmp_path / f"{pid}.opened").exists() for pid in workers), message="owner's post_fork")
    assert server.wait_for_log(lambda log: log.get("message") == "owner's when_ready ran")
    # The platform's request layers and deadlines still answer.
    assert server.request("/health")[0] == 200
    assert b"408" in server.exchange(b"GET / HTTP/1.1\r\nHost: x\r\n", timeout=60).split(b"\r\n")[0]
    # The platform's post_fork makes gunicorn's own protocol errors problems.
    assert b"application/problem+json" in server.exchange(b"NOT HTTP AT ALL\r\n\r\n")

    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
    assert all((tmp_path / f"{pid}.closed").exists() for pid in workers), "the owner's worker_exit did not run"


def _owner_conf(tmp_path, owner: str):
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text((PROJECT_ROOT / "gunicorn.conf.py").read_text() + owner)
    return conf


def test_the_owners_worker_count_is_the_one_told_and_run(serve, tmp_path):
    """`workers = 3` under "Your stuff" wins over the platform's 2: the story, the board and the processes say 3."""
    conf = _owner_conf(tmp_path, "\nworkers = 3\n")
    server = serve({"WEB_CONCURRENCY": "2"}, command=[sys.executable, "-m", "gunicorn", "-c", str(conf), FIXTURE_APP])

    story = server.wait_for_log(lambda log: "workers" in log and "threads" in log, message="the start story")
    assert story["message"].startswith("Starting 3 workers for load balancing") and story["workers"] == 3
    assert "gunicorn.conf.py" in story["message"], "the story says where the count came from"
    assert server.wait_for_log(message_starts("Master process starting cluster mode"))
    workers = server.wait_for_workers(3)
    children = {child.pid for child in psutil.Process(server.process.pid).children()}
    assert children == workers
    assert json.loads(server.status("--json"))["configured_workers"] == 3

    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0


def test_a_bind_on_the_command_line_is_the_port_logged_and_looked_up(serve):
    """`--bind` elsewhere than PORT: the log names the bound port, and `status` finds the cluster there."""
    port_variable, bound = free_port(), free_port()
    command = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{bound}", FIXTURE_APP]
    server = serve({"WEB_CONCURRENCY": "2", "PORT": str(port_variable)}, command=command, port=bound)

    listening = server.wait_for_log(message_starts("Listening on port"))
    assert listening["message"] == f"Listening on port {bound}"
    assert listening["addresses"] == [f"127.0.0.1:{bound}"]
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port_variable), timeout=5):
        pass
    assert len(server.wait_for_workers(2)) == 2
    # `status --port <bound>`, and plain `status` from a shell with PORT set: it is the one cluster running.
    assert json.loads(server.status("--json"))["master_pid"] == server.process.pid
    plain = subprocess.run(
        [*CLUSTER_COMMAND, "status", "--json"], cwd=PROJECT_ROOT, env=server.env, capture_output=True, text=True
    )
    assert plain.returncode == 0, plain.stderr
    assert json.loads(plain.stdout)["master_pid"] == server.process.pid

    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0


if project.HAS_DATABASE:
    # Defined in projects with the database only: a skipped test fails in CI.

    @pytest.mark.cluster
    def test_the_database_budget_counts_the_owners_workers(serve, tmp_path, postgres):
        """Every worker gunicorn really runs holds a pool: the budget shares the server among 3, not 2."""
        url = create_database(postgres, "owner_workers")
        conf = _owner_conf(tmp_path, "\nworkers = 3\n")
        db_app = "railkit_tests.fixture_db_app:create_app()"
        env = {"DATABASE_URL": url, "RATE_LIMIT": "off", "WEB_CONCURRENCY": "2"}
        server = serve(env, command=[sys.executable, "-m", "gunicorn", "-c", str(conf), db_app])
        line = server.wait_for_log(message_starts("Database connections: "))
        assert " x 3 workers x " in line["message"]
        assert line["service_connections"] <= line["usable_connections"]
        assert len(server.wait_for_workers(3)) == 3
