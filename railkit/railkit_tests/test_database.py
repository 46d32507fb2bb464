"""railkit.db against a real Postgres: settings, the connection budget, fork safety, bounded waits, readiness.

Each cluster serves fixture_db_app.py with a database of its own on one
throwaway server (railkit.db.testing).
"""

import concurrent.futures
import json
import signal
import sys
import threading

import psutil
import psycopg
import pytest
from sqlalchemy import event, exc, text

import railkit.db
from railkit import project
from railkit.db import engines
from railkit.db.budget import BudgetError, ServerLimits, plan_budget, replicas_of, usable_connections
from railkit.db.config import parse_database_url, read_database_settings, read_migration_settings
from railkit.db.messages import first_line
from railkit.db.testing import create_database, postgres  # noqa: F401 (a fixture)
from railkit.plans import PLANS
from railkit.settings import SettingError, Settings

from . import fixture_db_app
from .servers import PROJECT_ROOT, free_port, message_starts, wait_until

DB_APP = "railkit_tests.fixture_db_app:create_app()"
WORKER_NAMES = f"{project.NAME} worker %"


def test_database_url_becomes_the_psycopg_url():
    assert parse_database_url("postgresql://u:p@db.railway.internal:5432/railway") == (
        "postgresql+psycopg://u:p@db.railway.internal:5432/railway"
    )
    assert parse_database_url("postgres://u@h/d").startswith("postgresql+psycopg://")
    assert parse_database_url("postgresql://u@/d?host=/run/postgresql").startswith("postgresql+psycopg://")


@pytest.mark.parametrize("value", ["mysql://u:p@h/d", "nonsense", "postgresql://u:secret@h:99999/d", ""])
def test_a_nonsense_database_url_is_refused_by_name_without_its_password(value):
    with pytest.raises(SettingError) as refused:
        read_database_settings(Settings.from_env({}), {"DATABASE_URL": value})
    assert refused.value.variable == "DATABASE_URL"
    assert "secret" not in str(refused.value)


def test_the_statement_timeout_stays_under_the_request_timeout():
    settings = read_database_settings(Settings.from_env({"REQUEST_TIMEOUT": "30"}), {"DATABASE_URL": "postgres://h/d"})
    assert 0 < settings.statement_timeout_ms < 30_000
    assert settings.pool_timeout < 30
    with pytest.raises(SettingError) as refused:
        read_database_settings(
            Settings.from_env({"REQUEST_TIMEOUT": "10"}),
            {"DATABASE_URL": "postgres://h/d", "DATABASE_STATEMENT_TIMEOUT_MS": "10000"},
        )
    assert refused.value.variable == "DATABASE_STATEMENT_TIMEOUT_MS"


@pytest.mark.parametrize("plan", sorted(PLANS))
def test_every_plan_has_a_budget_statement(plan):
    """Each plan's default cluster either fits a default Postgres (100) or is refused with the variables to change."""
    default = ServerLimits(100, "max_connections=100")
    holders = 5 * replicas_of(PLANS[plan]) * 2
    try:
        budget = plan_budget(usable=default, workers=5, concurrency=32, replicas=replicas_of(PLANS[plan]), reserved=3)
    except BudgetError as error:
        assert holders > 97
        assert "WEB_CONCURRENCY" in str(error) and "max_connections" in str(error)
    else:
        assert budget.service_total <= 97 and budget.per_worker >= 1


def test_the_budget_fits_the_service_and_its_deploys_into_the_server():
    budget = plan_budget(usable=ServerLimits(100, "t"), workers=5, concurrency=32, replicas=2, reserved=3)
    # 5 workers x 2 replicas x 2 deployments share 97 connections.
    assert (budget.pool_size, budget.max_overflow) == (4, 0)
    assert budget.service_total == 80
    assert (
        plan_budget(usable=ServerLimits(10_000, "t"), workers=2, concurrency=1, replicas=1, reserved=3).per_worker == 1
    )


def test_the_budget_leaves_other_services_their_declared_share():
    """A worker service holds DATABASE_OTHER_CONNECTIONS of the server's connections: the web's pools get the rest."""
    budget = plan_budget(usable=ServerLimits(100, "t"), workers=5, concurrency=32, replicas=2, reserved=3, others=20)
    # 5 workers x 2 replicas x 2 deployments share 100 - 3 - 20 = 77.
    assert budget.per_worker == 3 and budget.service_total + 3 + 20 <= 100
    assert "20 for other services (DATABASE_OTHER_CONNECTIONS)" in budget.describe()
    assert budget.fits(5) and not budget.fits(7)
    with pytest.raises(BudgetError, match="DATABASE_OTHER_CONNECTIONS"):
        plan_budget(usable=ServerLimits(100, "t"), workers=5, concurrency=32, replicas=2, reserved=3, others=80)


def test_a_budget_that_cannot_fit_names_the_variables_to_change():
    with pytest.raises(BudgetError, match="WEB_CONCURRENCY"):
        plan_budget(usable=ServerLimits(100, "t"), workers=17, concurrency=32, replicas=6, reserved=3)
    with pytest.raises(BudgetError, match="DATABASE_POOL_SIZE"):
        plan_budget(usable=ServerLimits(100, "t"), workers=5, concurrency=32, replicas=2, reserved=3, pool_size=20)


@pytest.mark.parametrize(
    "name",
    ["DATABASE_POOL_SIZE", "DATABASE_POOL_TIMEOUT", "DATABASE_REPLICAS", "DATABASE_STATEMENT_TIMEOUT_MS",
     "DATABASE_RESERVED_CONNECTIONS", "DATABASE_POOLER", "DATABASE_POOLER_CONNECTIONS", "DATABASE_OTHER_CONNECTIONS",
     "DATABASE_MIGRATION_LOCK_TIMEOUT", "DATABASE_MIGRATION_RETRIES", "DATABASE_MIGRATION_WAIT"],
)  # fmt: skip
def test_an_empty_value_is_refused_as_web_concurrency_is(name):
    """Set to nothing is a mistake to name, not the default: railkit.settings refuses WEB_CONCURRENCY="" so."""
    with pytest.raises(SettingError):
        Settings.from_env({"WEB_CONCURRENCY": ""})
    environ = {"DATABASE_URL": "postgres://h/d", "DATABASE_UNPOOLED_URL": "postgres://direct/d", name: ""}
    with pytest.raises(SettingError) as refused:
        read_database_settings(Settings.from_env({}), environ)
        read_migration_settings(environ)
    assert refused.value.variable == name


def test_a_drivers_message_in_one_line():
    """One helper for every log line that quotes the driver: its first line, or the error's name when it is empty."""
    assert first_line(psycopg.OperationalError("server closed the connection\n\tThis probably means...")) == (
        "server closed the connection"
    )
    assert first_line(psycopg.OperationalError("")) == "OperationalError"
    assert first_line(psycopg.OperationalError(" \n ")) == "OperationalError"
    wrapped = exc.OperationalError("SELECT 1", {}, psycopg.errors.AdminShutdown("terminating connection\nDETAIL: x"))
    assert first_line(wrapped) == "terminating connection"


def test_a_failed_rollback_with_an_empty_message_never_raises_from_teardown(postgres, monkeypatch):  # noqa: F811
    """The request's teardown is documented as never raising: a driver error that says nothing included."""
    for name in ("REDIS_URL", "RATE_LIMIT", "ENABLE_CLUSTERING", "WEB_CONCURRENCY", "RAILWAY_PLAN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", create_database(postgres, "teardown"))
    app = fixture_db_app.create_app({"TESTING": True})
    made = railkit.db.engine()

    def server_gone(_connection):  # what psycopg raises when the socket dies without a word
        raise exc.OperationalError("ROLLBACK", {}, psycopg.OperationalError(""))

    event.listen(made, "rollback", server_gone)
    try:
        with app.app_context():
            assert railkit.db.session.execute(text("SELECT 1")).scalar() == 1
        # Left the context: teardown closed the session, whose rollback failed, and said so in a line.
    finally:
        event.remove(made, "rollback", server_gone)
        engines.dispose()


def test_what_the_role_may_open():
    assert usable_connections(100, 3, is_superuser=True, role_limit=-1) == 100
    assert usable_connections(100, 3, is_superuser=False, role_limit=-1) == 97
    assert usable_connections(100, 3, is_superuser=False, role_limit=20) == 20


# -- clusters against the real server ------------------------------------------------------------------


def _env(url: str, **extra: str) -> dict:
    """A cluster's environment for `url`; not rate limited: the load tests send more than a plan allows."""
    return {"DATABASE_URL": url, "RATE_LIMIT": "off", **extra}


def _backends(url: str) -> list[tuple[int, int, str]]:
    """(backend pid, client port, application_name) of every worker connection to the server."""
    with psycopg.connect(url, autocommit=True) as connection:
        return connection.execute(
            "SELECT pid, client_port, application_name FROM pg_stat_activity WHERE application_name LIKE %s",
            (WORKER_NAMES,),
        ).fetchall()


def _socket_holders(pids: set[int], server_port: int) -> dict[int, set[int]]:
    """Local port of each TCP connection to the server -> the processes holding that socket."""
    holders: dict[int, set[int]] = {}
    for pid in pids:
        for connection in psutil.Process(pid).net_connections(kind="tcp"):
            if connection.raddr and connection.raddr.port == server_port:
                holders.setdefault(connection.laddr.port, set()).add(pid)
    return holders


def _load(server, path: str, requests: int, clients: int) -> list[int]:
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        return list(pool.map(lambda _: server.request(path)[0], range(requests)))


def _assert_one_process_per_backend(server, postgres, url):  # noqa: F811 (postgres is the fixture's value)
    workers = server.worker_pids()
    master = server.process.pid
    backends = _backends(url)
    assert backends, "the workers hold no connection"
    holders = _socket_holders(workers | {master}, postgres.port)
    for backend_pid, client_port, name in backends:
        named_pid = int(name.rsplit(" ", 1)[1])
        assert holders.get(client_port) == {named_pid}, (backend_pid, client_port, name, holders.get(client_port))
        assert named_pid in workers
    assert master not in {pid for owners in holders.values() for pid in owners}
    return backends


@pytest.mark.cluster
def test_no_two_processes_ever_share_a_backend_across_workers_and_a_replaced_worker(serve, postgres):  # noqa: F811
    url = create_database(postgres, "fork_safety")
    server = serve(_env(url, WEB_CONCURRENCY="3"), app=DB_APP)
    assert set(_load(server, "/db/sleep?seconds=0.05", 60, 12)) == {200}
    before = _assert_one_process_per_backend(server, postgres, url)

    victim = next(iter(server.worker_pids()))
    psutil.Process(victim).send_signal(signal.SIGKILL)
    server.wait_for_workers(3, without=victim)
    # The dead worker's backends end with it (the kernel closed its sockets).
    wait_until(
        lambda: all(not name.endswith(f" {victim}") for _, _, name in _backends(url)), message="its backends gone"
    )
    assert set(_load(server, "/db/sleep?seconds=0.05", 60, 12)) == {200}
    after = _assert_one_process_per_backend(server, postgres, url)
    assert {name for *_, name in after} - {name for *_, name in before}, "the new worker made its own connections"


@pytest.mark.cluster
def test_the_start_up_story_states_the_budget(serve, postgres):  # noqa: F811
    url = create_database(postgres, "story")
    server = serve(_env(url, WEB_CONCURRENCY="2"), app=DB_APP)
    line = server.wait_for_log(message_starts("Database connections: "))
    # 200 allowed, 3 reserved, 2 workers x 2 replicas (hobby) x 2 deployments: 197 // 8.
    assert line["pool_size"] == 24 and line["max_overflow"] == 0
    assert line["pid"] == server.process.pid, "decided in the master"
    # The master asked with a connection of its own, closed before any worker was forked.
    with psycopg.connect(url, autocommit=True) as connection:
        names = [row[0] for row in connection.execute("SELECT application_name FROM pg_stat_activity").fetchall()]
    assert not [name for name in names if name.startswith(f"{project.NAME} master")]


@pytest.mark.cluster
def test_a_configuration_that_cannot_fit_is_refused_with_one_line(serve, postgres):  # noqa: F811
    url = create_database(postgres, "refused")
    server = serve(_env(url, WEB_CONCURRENCY="4", DATABASE_REPLICAS="40"), app=DB_APP, wait=False)
    assert server.wait_exit() == 78
    refusals = [log for log in server.logs if log.get("message", "").startswith("Refusing to start")]
    assert len(refusals) == 1 and refusals[0]["variable"] == "WEB_CONCURRENCY"
    assert "DATABASE_REPLICAS" in refusals[0]["message"]


@pytest.mark.cluster
def test_a_nonsense_database_url_stops_the_start_naming_it(serve):
    server = serve({"DATABASE_URL": "mysql://root:hunter2@db/app"}, app=DB_APP, wait=False)
    assert server.wait_exit() == 78
    lines = [json.loads(line) for line in server.lines if line.startswith("{")]
    refusals = [log for log in lines if log.get("variable") == "DATABASE_URL"]
    assert len(refusals) == 1 and refusals[0]["level"] == "error"
    assert "hunter2" not in "".join(server.lines)


@pytest.mark.cluster
def test_an_exhausted_pool_answers_503_with_retry_after_and_never_hangs(serve, postgres):  # noqa: F811
    url = create_database(postgres, "exhausted")
    env = _env(url, WEB_CONCURRENCY="1", DATABASE_POOL_SIZE="1", DATABASE_POOL_TIMEOUT="0.5")
    server = serve(env, app=DB_APP)
    holder = threading.Thread(target=server.request, args=("/db/sleep?seconds=8",))
    holder.start()
    wait_until(lambda: len(_backends(url)) == 1 and _active(url), message="the one connection busy")
    status, headers, body = server.request("/db/backend", timeout=10)
    holder.join()
    assert status == 503
    assert headers["Content-Type"] == "application/problem+json"
    assert headers["Retry-After"] == "1"
    assert "busy" in json.loads(body)["detail"]
    assert server.request("/db/backend")[0] == 200, "the connection came back"


def _active(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as connection:
        query = "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s AND state = 'active'"
        return connection.execute(query, (WORKER_NAMES,)).fetchone()[0] > 0


@pytest.mark.cluster
def test_a_query_that_would_run_forever_is_cancelled_and_answered_504_the_worker_intact(serve, postgres):  # noqa: F811
    url = create_database(postgres, "forever")
    env = _env(url, WEB_CONCURRENCY="1", DATABASE_STATEMENT_TIMEOUT_MS="500")
    server = serve(env, app=DB_APP)
    worker = server.worker_pids()
    status, headers, body = server.request("/db/sleep?seconds=3600", timeout=20)
    assert status == 504
    assert headers["Content-Type"] == "application/problem+json"
    assert "statement_timeout" in json.loads(body)["detail"]
    assert server.request("/db/backend")[0] == 200
    assert server.worker_pids() == worker, "the same worker serves on"


@pytest.mark.cluster
def test_postgres_down_at_start_readiness_503_liveness_200_cluster_runs(serve):
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    server = serve(_env(nowhere, WEB_CONCURRENCY="2"), app=DB_APP)
    server.wait_for_log(message_starts("Could not ask the database"))
    assert server.request("/health")[0] == 200
    status, headers, body = server.request("/health/ready")
    assert status == 503
    assert headers["Content-Type"] == "application/problem+json"
    assert "Postgres" in json.loads(body)["detail"]
    status, headers, _ = server.request("/db/backend")
    assert status == 503 and headers["Retry-After"]
    workers = server.wait_for_workers(2)
    assert server.request("/health")[0] == 200 and server.worker_pids() == workers, "no worker died"


@pytest.mark.cluster
@pytest.mark.worker_class("gevent")
@pytest.mark.load
def test_gevent_workers_run_1000_queries_of_50ms_at_once_not_one_after_another(serve, postgres):  # noqa: F811
    """psycopg 3 sees gevent's patched socket module and waits cooperatively (its C wait would block the hub)."""
    import asyncio

    url = create_database(postgres, "gevent")
    # Two workers: one worker closes idle connections near its 1,000 (railkit.cluster.limits). Serialised, the
    # last query would wait 25 s: the peak below tells, and the pool's wait outlasts a busy machine's 29 s.
    env = _env(url, WEB_CONCURRENCY="2", DATABASE_REPLICAS="1", DATABASE_POOL_SIZE="48", DATABASE_POOL_TIMEOUT="60")
    server = serve(env, app=DB_APP)
    peak = {"active": 0}
    done = threading.Event()

    def watch():
        # One connection (each statement is a transaction of its own: a fresh view of the backends).
        with psycopg.connect(url, autocommit=True) as connection:
            query = "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s AND state = 'active'"
            while not done.wait(0.01):
                peak["active"] = max(peak["active"], connection.execute(query, (WORKER_NAMES,)).fetchone()[0])

    async def one() -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /db/sleep?seconds=0.05 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        await writer.drain()
        head = await reader.readline()
        writer.close()
        return int(head.split()[1]) if head else 0

    async def thousand() -> list[int]:
        return await asyncio.gather(*(one() for _ in range(1000)))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        statuses = asyncio.run(asyncio.wait_for(thousand(), timeout=120))
    finally:
        done.set()
        watcher.join()
    assert statuses.count(200) == 1000, {status: statuses.count(status) for status in set(statuses)}
    # Serialised, each worker would have one query running at a time.
    assert peak["active"] >= 20, peak


# -- the budget as the worker count changes ------------------------------------------------------------------

# 200 allowed (the test role is a superuser), 3 reserved: 48 per worker x 2 workers x 1 replica x 2 deployments
# = 192 fits, 3 workers (288) do not.
TIGHT_BUDGET = {"DATABASE_REPLICAS": "1", "DATABASE_POOL_SIZE": "48"}


@pytest.mark.cluster
def test_ttin_past_the_budget_is_refused_with_one_line_and_ttou_is_taken(serve, postgres):  # noqa: F811
    url = create_database(postgres, "ttin")
    server = serve(_env(url, WEB_CONCURRENCY="2", **TIGHT_BUDGET), app=DB_APP)
    server.wait_for_workers(2)
    server.signal(signal.SIGTTIN)
    refusal = server.wait_for_log(message_starts("Refusing 3 workers"))
    assert refusal["level"] == "error" and refusal["variable"] == "WEB_CONCURRENCY"
    assert "= 288 connections" in refusal["message"] and "keeping 2" in refusal["message"]
    # Had the third worker been forked, one TTOU would leave two.
    server.signal(signal.SIGTTOU)
    server.wait_for_workers(1)
    server.wait_for_log(lambda log: message_starts("Database connections: 48 per worker x 1 workers")(log))
    server.signal(signal.SIGTTIN)
    server.wait_for_workers(2)
    assert len([log for log in server.logs if message_starts("Refusing")(log)]) == 1
    assert server.request("/db/backend")[0] == 200


@pytest.mark.cluster
def test_a_reload_is_budgeted_again_and_refused_when_it_cannot_fit(serve, postgres, tmp_path):  # noqa: F811
    """SIGHUP re-reads gunicorn.conf.py: its workers get a budget of their own, or the old count stays."""
    url = create_database(postgres, "reload")
    count = tmp_path / "workers"
    count.write_text("2")
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text((PROJECT_ROOT / "gunicorn.conf.py").read_text() + f"\nworkers = int(open({str(count)!r}).read())\n")
    command = [sys.executable, "-m", "gunicorn", "-c", str(conf), DB_APP]
    server = serve(_env(url, **TIGHT_BUDGET), command=command)
    first = server.wait_for_workers(2)

    count.write_text("3")
    server.signal(signal.SIGHUP)
    refusal = server.wait_for_log(message_starts("Refusing the reloaded configuration's 3 workers"))
    assert refusal["level"] == "error" and refusal["kept_workers"] == 2
    wait_until(lambda: len(pids := server.worker_pids()) == 2 and not pids & first, message="2 new workers")

    count.write_text("1")
    server.signal(signal.SIGHUP)
    server.wait_for_log(message_starts("Database connections: 48 per worker x 1 workers"))
    server.wait_for_workers(1)
    assert server.request("/db/backend")[0] == 200


@pytest.mark.cluster
def test_the_master_holds_no_connection_after_the_fork_and_names_the_code_that_opened_one(serve, postgres):  # noqa: F811
    url = create_database(postgres, "master_connection")
    server = serve(_env(url, WEB_CONCURRENCY="2", FIXTURE_QUERY_IN_CREATE_APP="1"), app=DB_APP)
    warning = server.wait_for_log(message_starts("The master process opened a database connection"))
    assert warning["level"] == "warn"
    assert "fixture_db_app.py" in warning["opened_at"] and "in create_app" in warning["opened_at"]
    master = server.process.pid
    wait_until(
        lambda: not _socket_holders({master}, postgres.port) and not _named(url, master), message="no master backend"
    )
    assert set(_load(server, "/db/sleep?seconds=0.05", 20, 4)) == {200}
    _assert_one_process_per_backend(server, postgres, url)


def _named(url: str, pid: int) -> list[str]:
    with psycopg.connect(url, autocommit=True) as connection:
        query = "SELECT application_name FROM pg_stat_activity WHERE application_name LIKE %s"
        return [row[0] for row in connection.execute(query, (f"% {pid}",)).fetchall()]
