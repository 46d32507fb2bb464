"""The owner's extension points through a real cluster: background work in every worker, a thread the
app starts while it loads, and the order of the owner's teardown hooks."""

import os
import signal
import sys
import time

import pytest

from railkit import project

from .servers import PROJECT_ROOT, wait_until

if project.HAS_DATABASE:
    from railkit.db.testing import create_database, postgres  # noqa: F401 (a fixture)

pytestmark = pytest.mark.cluster

BACKGROUND_APP = "railkit_tests.background_app:app"
THREADED_APP = "railkit_tests.background_app:threaded"


def test_background_work_runs_in_every_worker_and_stops_before_it_exits(serve, tmp_path):
    server = serve({"WEB_CONCURRENCY": "2", "BACKGROUND_DIR": str(tmp_path)}, app=BACKGROUND_APP)
    workers = server.wait_for_workers(2)
    wait_until(lambda: {int(path.stem) for path in tmp_path.glob("*.running")} == workers, message="a task per worker")
    assert not (tmp_path / f"{server.process.pid}.running").exists(), "the master ran the task"

    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
    assert {int(path.stem) for path in tmp_path.glob("*.stopped")} == workers, "a task was not stopped"
    assert not [log for log in server.logs if log.get("tasks")], "a task was left behind"


@pytest.mark.parametrize("kind", ["daemon", "non-daemon holding a lock"])
def test_a_thread_started_while_the_app_loads_refuses_the_start_naming_it(serve, kind):
    """A fork copies no thread: it would run in the master only, and a lock it held would stay held in every worker."""
    env = {"WEB_CONCURRENCY": "2", "THREAD_KIND": "daemon" if kind == "daemon" else "lock"}
    server = serve(env, app=THREADED_APP, wait=False)
    assert server.wait_exit() == 78, "".join(server.lines)
    [refusal] = [log for log in server.logs if log.get("level") == "error"]
    assert refusal["message"].startswith("Refusing to start: the app started a thread")
    assert "lock-holder (railkit_tests.background_app._hold_the_lock_forever" in refusal["message"]
    assert "@railkit.in_every_worker" in refusal["message"]
    assert not [log for log in server.logs if log.get("worker_pid")], "a worker was forked"


def test_the_owners_teardown_hooks_run_before_the_platforms(serve, tmp_path):
    """worker_exit: the owner's runs while the platform's background tasks still run (the platform stops them after)."""
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(
        (PROJECT_ROOT / "gunicorn.conf.py").read_text()
        + f"""

def worker_exit(server, worker):
    import os, pathlib
    folder = pathlib.Path({str(tmp_path)!r})
    stopped = (folder / f"{{os.getpid()}}.stopped").exists()
    (folder / f"{{os.getpid()}}.owner-saw-{{'stopped' if stopped else 'running'}}").touch()
"""
    )
    command = [sys.executable, "-m", "gunicorn", "-c", str(conf), BACKGROUND_APP]
    server = serve({"WEB_CONCURRENCY": "1", "BACKGROUND_DIR": str(tmp_path)}, command=command)
    [worker] = server.wait_for_workers(1)
    wait_until(lambda: (tmp_path / f"{worker}.running").exists(), message="the task")
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
    assert (tmp_path / f"{worker}.owner-saw-running").exists(), os.listdir(tmp_path)
    assert (tmp_path / f"{worker}.stopped").exists()


if project.HAS_DATABASE:

    def test_the_owners_worker_exit_can_still_use_the_database_pool(serve, tmp_path, postgres):
        url = create_database(postgres, "teardown")
        conf = tmp_path / "gunicorn.conf.py"
        conf.write_text(
            (PROJECT_ROOT / "gunicorn.conf.py").read_text()
            + f"""

def worker_exit(server, worker):
    import os, pathlib
    from sqlalchemy import text
    from railkit.db import engine
    pooled = engine().pool.checkedin()  # the connection /health/ready opened, unless the pool was disposed
    with engine().connect() as connection:
        answer = connection.execute(text("SELECT 41 + 1")).scalar()
    (pathlib.Path({str(tmp_path)!r}) / f"{{os.getpid()}}.answer").write_text(f"{{pooled}} {{answer}}")
"""
        )
        db_app = "railkit_tests.fixture_db_app:create_app()"
        command = [sys.executable, "-m", "gunicorn", "-c", str(conf), db_app]
        server = serve({"WEB_CONCURRENCY": "1", "DATABASE_URL": url, "RATE_LIMIT": "off"}, command=command)
        [worker] = server.wait_for_workers(1)
        assert server.request("/health/ready")[0] == 200  # the worker's pool is open
        server.signal(signal.SIGTERM)
        assert server.wait_exit() == 0
        pooled, answer = (tmp_path / f"{worker}.answer").read_text().split()
        assert answer == "42", "".join(server.lines[-20:])
        assert int(pooled) >= 1, "the owner's worker_exit ran after the platform disposed of the pool"
        assert not [log for log in server.logs if log.get("forced")], "the worker's exit waited for GRACEFUL_TIMEOUT"


OWNER_API_APP = "railkit_tests.owner_api_app:create_app()"


def test_the_owners_bad_setting_refuses_the_start_before_any_worker(serve):
    server = serve({"WEB_CONCURRENCY": "2", "FIXTURE_PAGE_SIZE": "1000"}, app=OWNER_API_APP, wait=False)
    assert server.wait_exit() == 78, "".join(server.lines)
    [refusal] = [log for log in server.logs if log.get("level") == "error"]
    assert refusal["variable"] == "FIXTURE_PAGE_SIZE" and "from 1 to 500" in refusal["message"]
    assert not [log for log in server.logs if log.get("worker_pid")], "a worker was forked"


def test_the_owners_readiness_check_decides_railways_healthcheck(serve):
    server = serve({"WEB_CONCURRENCY": "2", "FIXTURE_PAGE_SIZE": "20"}, app=OWNER_API_APP)
    assert b'"page_size":20' in server.request("/page-size")[2]
    headers = {"Host": "healthcheck.railway.app"}
    status, _, body = server.request("/health/ready", headers=headers)
    assert status == 200 and b"dependency:responseTime" in body

    down = serve({"WEB_CONCURRENCY": "1", "DEPENDENCY_SECONDS": "30"}, app=OWNER_API_APP)
    started = time.monotonic()
    assert down.request("/health/ready", headers=headers)[0] == 503
    assert time.monotonic() - started < 5, "the check's 1 s deadline was not kept"
    assert down.request("/health")[0] == 200, "liveness waited for the owner's dependency"
