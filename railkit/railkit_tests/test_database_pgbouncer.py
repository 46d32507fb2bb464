"""railkit.db behind Railway's managed PgBouncer: requests through DATABASE_URL (the pooler, transaction
mode), migrations and their advisory lock through DATABASE_UNPOOLED_URL (Postgres itself).

A real PgBouncer (Debian's) in transaction mode, with few server connections so that clients really share
them, in front of the session's throwaway Postgres (railkit.db.testing).
"""

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import psycopg
import pytest

from railkit.db.config import read_connections, read_database_settings
from railkit.db.testing import create_database, pgbouncer, postgres  # noqa: F401 (fixtures)
from railkit.settings import SettingError, Settings

from .servers import PROJECT_ROOT, message_starts, wait_until

DB_APP = "railkit_tests.fixture_db_app:create_app()"


def test_a_transaction_mode_pooler_is_inferred_from_railways_variables_or_declared():
    direct, pooled = "postgresql://u:p@postgres.railway.internal:5432/railway", "postgresql://u:p@pgb:6432/railway"
    assert read_connections({"DATABASE_URL": direct}).pooler is None
    railway = read_connections({"DATABASE_URL": pooled, "DATABASE_UNPOOLED_URL": direct})
    assert (railway.pooler, railway.session_url) == ("transaction", "postgresql+psycopg" + direct[10:])
    # railway.ts refers to DATABASE_UNPOOLED_URL whether PgBouncer is on or not: empty while it is off.
    assert read_connections({"DATABASE_URL": direct, "DATABASE_UNPOOLED_URL": ""}).pooler is None
    assert read_connections({"DATABASE_URL": direct, "DATABASE_UNPOOLED_URL": direct}).pooler is None
    declared = {"DATABASE_URL": pooled, "DATABASE_UNPOOLED_URL": direct, "DATABASE_POOLER": "session"}
    assert read_connections(declared).pooler == "session"
    assert read_connections({"DATABASE_URL": pooled, "DATABASE_POOLER": "transaction"}).pooler == "transaction"
    for bad in ({"DATABASE_POOLER": "pgbouncer"}, {"DATABASE_UNPOOLED_URL": "mysql://u:secret@h/d"}):
        with pytest.raises(SettingError) as refused:
            read_connections({"DATABASE_URL": pooled, **bad})
        assert refused.value.variable == next(iter(bad)) and "secret" not in str(refused.value)


def test_the_pooler_sets_the_budgets_limit():
    env = {"DATABASE_URL": "postgres://pgb:6432/d", "DATABASE_UNPOOLED_URL": "postgres://pg/d"}
    settings = read_database_settings(Settings.from_env({}), env)
    assert (settings.pooler, settings.pooler_connections) == ("transaction", 1000)
    settings = read_database_settings(Settings.from_env({}), {**env, "DATABASE_POOLER_CONNECTIONS": "300"})
    assert settings.pooler_connections == 300


def _rows_table(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("CREATE TABLE fixture_rows (id serial PRIMARY KEY, name text NOT NULL)")


def _create_and_read(server, count: int, clients: int) -> list:
    def pair(n: int):
        body = json.dumps({"name": f"row {n}"}).encode()
        status, _, answer = server.request("/db/rows", "POST", body, {"Content-Type": "application/json"})
        return status, json.loads(answer) if status == 201 else answer[:300]

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        return list(pool.map(pair, range(count)))


@pytest.mark.cluster
@pytest.mark.load
def test_load_through_a_transaction_mode_pooler_answers_every_request(serve, postgres, pgbouncer):  # noqa: F811
    """Workers' connections share 5 server connections: no prepared statement, no session state, no error.

    Before, all 1,500 answered 503 (PgBouncer refuses the startup parameter `options`); without a
    statement timeout, 17 answered 500 (psycopg prepares a query it ran 5 times on a connection).
    """
    direct = create_database(postgres, "through_pgbouncer")
    _rows_table(direct)
    env = {
        "DATABASE_URL": pgbouncer.url(direct),
        "DATABASE_UNPOOLED_URL": direct,
        "DATABASE_POOLER_CONNECTIONS": "400",
        "WEB_CONCURRENCY": "3",
        "RATE_LIMIT": "off",
    }
    server = serve(env, app=DB_APP)
    line = server.wait_for_log(message_starts("Database connections: "))
    assert "the transaction-mode pooler allows (DATABASE_POOLER_CONNECTIONS=400)" in line["message"]
    assert line["pooler"] == "transaction" and line["service_connections"] <= 400

    answers = _create_and_read(server, 1500, clients=12)
    failures = [answer for answer in answers if answer[0] != 201]
    assert not failures, (len(failures), failures[:3])
    assert all(answer[1]["name"] == f"row {n}" for n, answer in enumerate(answers))
    # statement_timeout still holds, set in each transaction (SET LOCAL) since PgBouncer refuses startup options...
    assert server.request("/db/setting?name=statement_timeout")[2] != b'{"value":"0"}\n'
    status, _, body = server.request("/db/sleep?seconds=3600", timeout=60)
    assert status == 504, body
    # ... and ends with it: a client of the pooler that set nothing finds the server's default.
    with psycopg.connect(pgbouncer.url(direct), autocommit=True, prepare_threshold=None) as client:
        for _ in range(20):
            assert client.execute("SHOW statement_timeout").fetchone()[0] == "0"
    with psycopg.connect(direct, autocommit=True) as connection:
        prepared = connection.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0]
        assert prepared == 0


ENV_PY = """
from alembic import context
from sqlalchemy import MetaData

from railkit.db.alembic_env import run_migrations

run_migrations(context, MetaData())
"""

MIGRATION = """
from alembic import op

revision = "0001"
down_revision = None


def upgrade():
    op.execute("CREATE TABLE runs (started timestamptz DEFAULT clock_timestamp())")
    op.execute("INSERT INTO runs DEFAULT VALUES")
    op.execute("SELECT pg_sleep({seconds})")
"""


def _migrations(folder, seconds: float):
    (folder / "versions").mkdir(parents=True)
    (folder / "env.py").write_text(ENV_PY)
    (folder / "versions" / "0001_runs.py").write_text(textwrap.dedent(MIGRATION.format(seconds=seconds)))
    ini = folder / "alembic.ini"
    ini.write_text("[alembic]\nscript_location = .\n")
    return ini


def _migrate(ini, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "railkit.db", "migrate", "--config", str(ini)],
        cwd=PROJECT_ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PROJECT_ROOT), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _logs(process: subprocess.Popen) -> list[dict]:
    output, _ = process.communicate(timeout=120)
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_five_racing_migrations_through_the_unpooled_url_apply_once(postgres, pgbouncer, tmp_path):  # noqa: F811
    direct = create_database(postgres, "racing_migrations")
    ini = _migrations(tmp_path / "migrations", seconds=3)
    env = {"DATABASE_URL": pgbouncer.url(direct), "DATABASE_UNPOOLED_URL": direct}
    runs = [_migrate(ini, env) for _ in range(5)]
    logs = [_logs(run) for run in runs]
    assert [run.returncode for run in runs] == [0] * 5, logs
    with psycopg.connect(direct) as connection:
        assert connection.execute("SELECT count(*) FROM runs").fetchone()[0] == 1
    waiting = message_starts("Waiting for another migration")
    assert [log for run_logs in logs for log in run_logs if waiting(log)], "the others waited for the first"
    assert not [log for run_logs in logs for log in run_logs if log["level"] == "error"]


def test_a_migration_through_a_transaction_pooler_alone_is_refused(pgbouncer, postgres, tmp_path):  # noqa: F811
    direct = create_database(postgres, "refused_migration")
    ini = _migrations(tmp_path / "migrations", seconds=0)
    run = _migrate(ini, {"DATABASE_URL": pgbouncer.url(direct), "DATABASE_POOLER": "transaction"})
    logs = _logs(run)
    assert run.returncode == 78
    [refusal] = [log for log in logs if log["level"] == "error"]
    assert refusal["variable"] == "DATABASE_UNPOOLED_URL"
    with psycopg.connect(direct) as connection:
        assert connection.execute("SELECT to_regclass('runs')").fetchone() == (None,)


def _lock_holders(url: str) -> list[int]:
    with psycopg.connect(url, autocommit=True) as connection:
        query = "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = %s AND granted"
        return [row[0] for row in connection.execute(query, (0x7261696C6B6974 & 0xFFFFFFFF,)).fetchall()]


def test_a_killed_migration_releases_the_lock_at_once(postgres, pgbouncer, tmp_path):  # noqa: F811
    """SIGKILLed mid-statement (a container stopped mid-deploy): the next deploy's run is not locked out."""
    direct = create_database(postgres, "killed_migration")
    ini = _migrations(tmp_path / "migrations", seconds=60)
    env = {"DATABASE_URL": pgbouncer.url(direct), "DATABASE_UNPOOLED_URL": direct}
    run = _migrate(ini, env)
    wait_until(lambda: _lock_holders(direct), timeout=60, message="the first run holds the migration lock")
    os.kill(run.pid, signal.SIGKILL)
    run.communicate(timeout=30)
    killed = time.monotonic()
    wait_until(lambda: not _lock_holders(direct), timeout=30, message="the lock released")
    assert time.monotonic() - killed < 10, "released when the session noticed, not when pg_sleep ended"
    again = _migrate(_migrations(tmp_path / "again", seconds=0), env)
    logs = _logs(again)
    assert again.returncode == 0, logs
    assert not [log for log in logs if message_starts("Waiting for another migration")(log)]
