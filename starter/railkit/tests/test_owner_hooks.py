"""Server hooks the owner defines in gunicorn.conf.py run after the platform's, never instead of them."""

import signal
import sys

import pytest

from .servers import FIXTURE_APP, PROJECT_ROOT, wait_until

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
