"""Memory: bounded before it is spent, and shared between workers.

Body bombs hit a cluster inside a real kernel memory limit, like a Railway
replica: a cgroup (v1) of the plan's replica size, joined before gunicorn
forks a worker. The kernel's OOM killer must never act. And every worker
serves the app the master imported, never an import of its own.
"""

import json
import os
import shlex
import signal
import sys
from pathlib import Path

import pytest

from railkit import project
from railkit.plans import PLANS
from railkit.settings import WORKER_CLASS

from .attacks import BodyBombs, probe_health
from .servers import FIXTURE_APP, Server, wait_until

pytestmark = pytest.mark.cluster

CGROUP_V1 = Path("/sys/fs/cgroup")
PLAN = PLANS["hobby"]
# About 200 bombs are answered in this long (gthread on 2 cores), every worker parsing its share of them.
ATTACK_SECONDS = 15
CLIENTS = 20
AVAILABILITY = 0.99
# A Railway replica's vCPUs are its own. Here it shares the machine with the
# test's clients and the tests beside it (no other load test: it runs alone),
# and the kernel splits CPU by threads (1024 each): weigh the replica like 4
# busy threads. At 16 the tests beside it got a sixteenth of a core each, and
# their own deadlines failed.
REPLICA_CPU_SHARES = 4 * 1024
# The rate limit would answer most bombs with 429 before their bodies cost anything.
UNLIMITED = "1000000/minute"


def _cgroups_writable() -> str | None:
    """Why the test cannot make a cgroup here, or None if it can."""
    if os.geteuid() != 0:
        return "needs root to create a cgroup (CI runs as root): run the tests as root to enable it"
    for controller in ("memory", "cpu"):
        if not os.access(CGROUP_V1 / controller / "cgroup.procs", os.W_OK):
            return f"needs a writable cgroup v1 {controller} controller at {CGROUP_V1 / controller}"
    return None


@pytest.fixture
def replica():
    """Two cgroups (memory, cpu) of the plan's replica size; removed afterwards."""
    reason = _cgroups_writable()
    if reason:
        pytest.skip(reason)
    name = f"{project.NAME}-test-{os.getpid()}"
    memory, cpu = CGROUP_V1 / "memory" / name, CGROUP_V1 / "cpu" / name
    memory.mkdir()
    cpu.mkdir()
    (memory / "memory.limit_in_bytes").write_text(str(PLAN.memory_mb * 2**20))
    period = int((cpu / "cpu.cfs_period_us").read_text())
    (cpu / "cpu.cfs_quota_us").write_text(str(PLAN.vcpu * period))
    (cpu / "cpu.shares").write_text(str(REPLICA_CPU_SHARES))
    yield memory, cpu
    for group in (memory, cpu):
        for pid in (group / "cgroup.procs").read_text().split():
            os.kill(int(pid), signal.SIGKILL)
        wait_until(lambda group=group: not (group / "cgroup.procs").read_text().strip(), message="an empty cgroup")
        group.rmdir()


def _oom_kills(memory: Path) -> int:
    fields = dict(line.split() for line in (memory / "memory.oom_control").read_text().splitlines())
    return int(fields.get("oom_kill", 0))


def _bombs() -> list[bytes]:
    """Bodies at the plan's size limit: the most Python objects per byte, and half as many padded with spaces.

    The first is refused before it is parsed (413); the second fits one
    worker's parse budget, so the budget has to share itself out.
    """
    limit = PLAN.max_body_mb * 2**20 - 16
    empty_objects = b"[" + b"{}," * (limit // 3 - 1) + b"{}]"
    half = b"[" + b"{}," * (limit // 6 - 1) + b"{}]"
    return [empty_objects, half + b" " * (limit - len(half))]


@pytest.mark.load(alone=True)
def test_body_bombs_in_a_replica_sized_cgroup_never_wake_the_oom_killer(replica):
    memory, cpu = replica
    # The shell joins the cgroups, then becomes gunicorn's master: every worker is forked inside.
    gunicorn = f"{sys.executable} -m gunicorn {shlex.quote(FIXTURE_APP)}"
    join_then_serve = f"echo $$ > {memory}/cgroup.procs && echo $$ > {cpu}/cgroup.procs && exec {gunicorn}"
    server = Server({"RAILWAY_PLAN": PLAN.name, "RATE_LIMIT": UNLIMITED}, command=["sh", "-c", join_then_serve])
    try:
        server.wait_healthy()
        story = server.wait_for_log(lambda log: "workers" in log and "threads" in log)
        server.wait_for_workers(story["workers"])
        with BodyBombs(server.port, _bombs(), clients=CLIENTS) as bombs:
            availability = probe_health(server.port, ATTACK_SECONDS)
        answers = bombs.answers
        peak_mb = int((memory / "memory.max_usage_in_bytes").read_text()) / 2**20
        print(
            f"{WORKER_CLASS}: answers {dict(answers)}; {availability}; peak {peak_mb:.0f} MB of {PLAN.memory_mb} MB; "
            f"OOM kills {_oom_kills(memory)}"
        )
        assert _oom_kills(memory) == 0
        if WORKER_CLASS != "sync":  # a sync worker serves one request at a time: see the README
            assert availability.share >= AVAILABILITY, str(availability)
        assert all(status[0] in "24" for status in answers), answers  # no 5xx, no reset
        assert sum(answers.values()) >= CLIENTS, answers
    finally:
        server.kill()


# Modules a worker may still import for itself after fork: small stdlib pieces
# reached only on its first requests. The app, Flask and their dependencies must
# come from the master.
APP_PACKAGES = ("railkit", "flask", "werkzeug", "limits", "redis")


def test_the_app_is_imported_once_in_the_master_and_shared_by_every_worker(serve):
    """Every worker serves the module objects the master imported before forking."""
    server = serve({"WEB_CONCURRENCY": "2", "RATE_LIMIT": UNLIMITED}, app="railkit_tests.loaded_once_app:app")
    workers = server.wait_for_workers(2)
    seen = {}

    def every_worker_answered():
        # Serve some requests first, as a worker does before it is asked; connections spread over both workers.
        for _ in range(5):
            server.request("/health")
        answer = json.loads(server.request("/loaded-in")[2])
        seen[answer["pid"]] = answer
        return set(seen) >= workers

    wait_until(every_worker_answered, message="an answer from every worker")
    for pid in workers:
        answer = seen[pid]
        assert answer["imported_in"] == server.process.pid != pid, answer
        again = [name for name in answer["imported_since_fork"] if name.split(".")[0] in APP_PACKAGES]
        assert not again, f"worker {pid} imported {again} itself"
