"""The database scenario's Postgres: one throwaway server, a table of rows, and wrk's script asking for them.

With PgBouncer installed, Railway's pooler stands in front of it too (transaction mode, Railway's 20
server connections), for a cluster that reaches the rows through it.
"""

import contextlib
import importlib.util
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

# Rows of the table: its primary key's index holds them all; every request asks for one at random.
ROWS = 10_000
# Room for the widest server's pools (the budget gives each cluster at most what this allows) and psql.
MAX_CONNECTIONS = 200
# Railway's PgBouncer: server connections per PgBouncer replica, clients it accepts (postgresql-pgbouncer.md).
PGBOUNCER_POOL_SIZE = 20
PGBOUNCER_MAX_CLIENTS = 1000
# Each wrk request is GET /db/<a random id>; Lua's fixed seed asks every server for the same rows in the same order.
RANDOM_ROW_SCRIPT = """\
request = function()
  return wrk.format("GET", "/db/" .. math.random(1, %d))
end
"""
SEED_SQL = (
    "CREATE TABLE bench_rows (id integer PRIMARY KEY, name text NOT NULL, price double precision NOT NULL)",
    f"INSERT INTO bench_rows SELECT n, 'row-' || n, n * 1.5 FROM generate_series(1, {ROWS}) AS n",
    "VACUUM ANALYZE bench_rows",
)


def missing(project: Path) -> str | None:
    """Why Postgres cannot run here, or None."""
    testing = _railkit_db_testing(project)
    return testing.HOW_TO_GET_IT if testing.server_binaries() is None else None


@dataclass
class SeededPostgres:
    """The running server (railkit's ThrowawayPostgres) and the Lua file wrk asks it through."""

    server: object
    script: str
    # railkit's ThrowawayPgBouncer in front of the server, or None without PgBouncer.
    pooler: object | None = None

    def pooled_env(self, env: dict) -> dict | None:
        """A cluster's variables to reach the rows through PgBouncer, as on Railway once it is on; None without it."""
        if self.pooler is None:
            return None
        return {**env, "DATABASE_URL": self.pooler.url(self.server.url), "DATABASE_UNPOOLED_URL": self.server.url}

    def cpu_seconds(self) -> float:
        """CPU time of the server and its backends so far, those already gone included, and PgBouncer's.

        Work done for the measured server, not a disturbance: a run takes it
        out of the other processes' share it is judged quiet by.
        """
        pid = int((self.server.data / "postmaster.pid").read_text().split()[0])
        root = psutil.Process(pid)
        total = 0.0
        pooler = [psutil.Process(self.pooler.process.pid)] if self.pooler else []
        for process in [root, *root.children(recursive=True), *pooler]:
            with contextlib.suppress(psutil.Error):  # a backend that just exited
                times = process.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
        return total


@contextmanager
def seeded_postgres(project: Path):
    """A throwaway Postgres holding bench_rows, with the Lua script for wrk; removed afterwards."""
    testing = _railkit_db_testing(project)
    server = testing.ThrowawayPostgres(max_connections=MAX_CONNECTIONS).start()
    pooler = None
    try:
        if shutil.which("pgbouncer") or Path("/usr/sbin/pgbouncer").exists():
            pooler = testing.ThrowawayPgBouncer(
                server, pool_size=PGBOUNCER_POOL_SIZE, max_client_conn=PGBOUNCER_MAX_CLIENTS
            ).start()
        for statement in SEED_SQL:  # one by one: VACUUM refuses to run inside psql -c's single transaction
            subprocess.run(
                [str(server.binaries / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", server.url, "-c", statement],
                check=True,
                capture_output=True,
            )
        with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="bench-rows-") as script:
            script.write(RANDOM_ROW_SCRIPT % ROWS)
            script.flush()
            yield SeededPostgres(server, script.name, pooler)
    finally:
        if pooler:
            pooler.remove()
        server.remove()


def version(postgres: SeededPostgres) -> str:
    """The server's version, e.g. 15.14 (from "postgres (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)")."""
    found = subprocess.run([str(postgres.server.binaries / "postgres"), "--version"], capture_output=True, text=True)
    words = found.stdout.split()
    return words[2] if found.returncode == 0 and len(words) > 2 else "?"


def _railkit_db_testing(project: Path):
    """The project's railkit/db/testing.py, loaded from its file.

    Importing it as railkit.db.testing would import railkit.db, which needs
    SQLAlchemy: the project's venv has it, the bench's does not.
    """
    path = project / "railkit" / "db" / "testing.py"
    spec = importlib.util.spec_from_file_location("bench_railkit_db_testing", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
