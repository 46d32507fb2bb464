"""A throwaway Postgres server for tests: Debian's binaries, a private folder, a free port, stopped afterwards.

Used by the platform's database tests and by the owner's (tests/test_items.py).
Postgres refuses to run as root, so as root the server runs as the `postgres`
user Debian's package creates (or `nobody`). ThrowawayPgBouncer puts Debian's
PgBouncer in front of one, in transaction mode, as Railway's pooler is.
"""

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

# The API: the platform's own tests also use the PgBouncer fixture and the server classes, which may change.
__all__ = ["create_database", "postgres"]

# Where Debian's postgresql package puts the server's programs (not on PATH).
DEBIAN_BINARIES = "/usr/lib/postgresql/*/bin"
HOW_TO_GET_IT = "needs Postgres's server: install it (e.g. `sudo apt-get install postgresql`), as CI does"
PGBOUNCER_HOW_TO_GET_IT = "needs PgBouncer: install it (e.g. `sudo apt-get install pgbouncer`), as CI does"
# Generous: the suite must pass on a loaded 2-core CI machine.
START_SECONDS = 60


def server_binaries() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres, or None when Postgres's server is not installed."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(os.path.realpath(on_path)).parent
    found = sorted(glob.glob(DEBIAN_BINARIES), key=lambda path: int(Path(path).parent.name.split(".")[0]))
    return Path(found[-1]) if found and (Path(found[-1]) / "initdb").exists() else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _server_user() -> str | None:
    """The unprivileged user to run the server as when we are root, else None (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root, and neither a postgres nor a nobody user exists to run Postgres as")


def _runuser() -> str:
    """util-linux's runuser, found off PATH too (it lives in /usr/sbin, which a test's PATH may lack)."""
    return shutil.which("runuser") or "/usr/sbin/runuser"


class ThrowawayPostgres:
    """One Postgres server in a temporary folder, listening on 127.0.0.1 at a free port."""

    def __init__(self, max_connections: int = 100, binaries: Path | None = None):
        self.binaries = binaries or server_binaries()
        if self.binaries is None:
            raise RuntimeError(HOW_TO_GET_IT)
        self.max_connections = max_connections
        self.port = _free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="railkit-pg-"))
        self.data = self.folder / "data"
        self.sockets = self.folder / "sockets"
        self.sockets.mkdir()
        self.user = _server_user()
        if self.user:
            os.chmod(self.folder, 0o755)
            account = pwd.getpwnam(self.user)
            for path in (self.folder, self.sockets):
                os.chown(path, account.pw_uid, account.pw_gid)
        self._run("initdb", "-D", str(self.data), "--username=postgres", "--auth=trust", "--no-sync", "-E", "UTF8")

    @property
    def url(self) -> str:
        """DATABASE_URL for this server's `postgres` database, over TCP."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *arguments: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(self.binaries / program), *arguments]
        if self.user:
            command = [_runuser(), "-u", self.user, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=check, timeout=START_SECONDS, cwd="/")

    def start(self) -> "ThrowawayPostgres":
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.sockets} -c max_connections={self.max_connections}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"), "-o", options,
            "-w", "-t", str(START_SECONDS), "start",
        )  # fmt: skip
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `fast` disconnects clients cleanly, `immediate` is a crash."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", str(START_SECONDS), "stop", check=False)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.folder / "server.log").read_text()
        return ""

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> "ThrowawayPostgres":
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.remove()


class ThrowawayPgBouncer:
    """PgBouncer in front of a ThrowawayPostgres, on 127.0.0.1 at a free port, trusting every user it lists.

    Transaction mode by default, with few server connections, so that clients
    really share them (Railway's: 20 per PgBouncer replica, 1,000 clients).
    """

    def __init__(self, server: ThrowawayPostgres, pool_mode: str = "transaction", pool_size: int = 5,
                 max_client_conn: int = 500):  # fmt: skip
        self.binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        if not os.path.exists(self.binary):
            raise RuntimeError(PGBOUNCER_HOW_TO_GET_IT)
        self.server = server
        self.port = _free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="railkit-pgbouncer-"))
        self.user = _server_user()
        (self.folder / "users.txt").write_text('"postgres" ""\n')
        (self.folder / "pgbouncer.ini").write_text(
            f"""[databases]
* = host=127.0.0.1 port={server.port}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {self.folder / "users.txt"}
admin_users = postgres
pool_mode = {pool_mode}
default_pool_size = {pool_size}
max_client_conn = {max_client_conn}
logfile = {self.folder / "pgbouncer.log"}
"""
        )
        if self.user:
            account = pwd.getpwnam(self.user)
            for path in (self.folder, *self.folder.iterdir()):
                os.chown(path, account.pw_uid, account.pw_gid)
        self.process: subprocess.Popen | None = None

    def url(self, server_url: str) -> str:
        """`server_url` (a database of the server behind) as reached through the pooler."""
        return server_url.replace(f"127.0.0.1:{self.server.port}/", f"127.0.0.1:{self.port}/", 1)

    def start(self) -> "ThrowawayPgBouncer":
        command = [self.binary, "--quiet", str(self.folder / "pgbouncer.ini")]
        if self.user:
            command = [_runuser(), "-u", self.user, "--", *command]
        self.process = subprocess.Popen(command, cwd="/", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"PgBouncer exited with {self.process.returncode}: {self.log()[-2000:]}")
            time.sleep(0.05)
        raise RuntimeError(f"PgBouncer did not listen within {START_SECONDS}s: {self.log()[-2000:]}")

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.folder / "pgbouncer.log").read_text()
        return ""

    def remove(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(START_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> "ThrowawayPgBouncer":
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.remove()


def create_database(server: ThrowawayPostgres, name: str) -> str:
    """A fresh, empty database on `server` (dropped first if it exists); its DATABASE_URL."""
    import psycopg

    with psycopg.connect(server.url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    return server.url.rpartition("/")[0] + f"/{name}"


@pytest.fixture(scope="session")
def postgres():
    """A throwaway Postgres server for the session; without Postgres installed, a skip saying how (a failure in CI)."""
    if server_binaries() is None:
        _missing(HOW_TO_GET_IT)
    server = ThrowawayPostgres(max_connections=200).start()
    yield server
    server.remove()


@pytest.fixture(scope="session")
def pgbouncer(postgres):
    """PgBouncer in transaction mode in front of the session's Postgres; `pgbouncer.url(create_database(...))`."""
    if not (shutil.which("pgbouncer") or os.path.exists("/usr/sbin/pgbouncer")):
        _missing(PGBOUNCER_HOW_TO_GET_IT)
    pooler = ThrowawayPgBouncer(postgres).start()
    yield pooler
    pooler.remove()


def _missing(how_to_get_it: str) -> None:
    """Skip, saying how to get what is missing; fail where CI is set (as GitHub sets it): a skip there never ran."""
    if os.environ.get("CI"):
        pytest.fail(f"CI must run this test: {how_to_get_it}")
    pytest.skip(how_to_get_it)
