"""`python -m railkit.db migrate`: once per deploy, never interleaved, a failure exits non-zero and changes nothing."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest

from railkit.db.testing import create_database, postgres  # noqa: F401 (a fixture)

from .servers import PROJECT_ROOT, message_starts

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
    op.execute("SELECT pg_sleep(1)")
    {failure}
"""


def _migrations(folder: Path, failure: str = "") -> Path:
    """An Alembic project in `folder` whose one migration takes a second (and fails, given `failure`)."""
    (folder / "versions").mkdir(parents=True)
    (folder / "env.py").write_text(ENV_PY)
    (folder / "versions" / "0001_runs.py").write_text(textwrap.dedent(MIGRATION.format(failure=failure)))
    ini = folder / "alembic.ini"
    ini.write_text("[alembic]\nscript_location = .\n")
    return ini


def _migrate(ini: Path, url: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "railkit.db", "migrate", "--config", str(ini)],
        cwd=PROJECT_ROOT,
        env={"DATABASE_URL": url, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(PROJECT_ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _logs(process: subprocess.Popen) -> list[dict]:
    output, _ = process.communicate(timeout=60)
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_two_runs_at_once_migrate_once_one_after_the_other(postgres, tmp_path):  # noqa: F811
    url = create_database(postgres, "migrate_twice")
    ini = _migrations(tmp_path / "migrations")
    first, second = _migrate(ini, url), _migrate(ini, url)
    logs = _logs(first) + _logs(second)
    assert (first.returncode, second.returncode) == (0, 0), logs
    with psycopg.connect(url) as connection:
        assert connection.execute("SELECT count(*) FROM runs").fetchone()[0] == 1
        assert connection.execute("SELECT version_num FROM alembic_version").fetchone()[0] == "0001"
    assert [log for log in logs if message_starts("Waiting for another migration")(log)]
    assert all(log["level"] in ("info", "warn", "debug") for log in logs)


def test_a_failed_migration_exits_non_zero_and_leaves_the_schema_as_it_was(postgres, tmp_path):  # noqa: F811
    url = create_database(postgres, "migrate_fails")
    ini = _migrations(tmp_path / "migrations", failure='op.execute("SELECT 1/0")')
    run = _migrate(ini, url)
    logs = _logs(run)
    assert run.returncode == 1
    assert [log for log in logs if log["level"] == "error" and "Migration failed" in log["message"]]
    with psycopg.connect(url) as connection:
        assert connection.execute("SELECT to_regclass('runs'), to_regclass('alembic_version')").fetchone() == (
            None,
            None,
        )


def test_a_bad_database_url_is_refused_by_name(tmp_path):
    ini = _migrations(tmp_path / "migrations")
    run = _migrate(ini, "mysql://nowhere/db")
    logs = _logs(run)
    assert run.returncode == 78
    assert [log for log in logs if log.get("variable") == "DATABASE_URL"]


@pytest.mark.cluster
def test_workers_never_migrate(serve, postgres):  # noqa: F811
    url = create_database(postgres, "never_migrate")
    env = {"DATABASE_URL": url, "WEB_CONCURRENCY": "2", "RATE_LIMIT": "off"}
    server = serve(env, app="railkit.tests.fixture_db_app:create_app()")
    assert server.request("/db/backend")[0] == 200
    with psycopg.connect(url) as connection:
        assert connection.execute("SELECT to_regclass('alembic_version')").fetchone() == (None,)
