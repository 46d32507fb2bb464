"""A throwaway Postgres server for tests: Debian's binaries, a private folder, a free port, stopped afterwards.

Used by the platform's database tests and by the owner's (tests/test_items.py).
Postgres refuses to run as root, so as root the server runs as the `postgres`
user Debian's package creates (or `nobody`).
"""

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

__all__ = ["create_database", "postgres"]

# Where Debian's postgresql package puts the server's programs (not on PATH).
DEBIAN_BINARIES = "/usr/lib/postgresql/*/bin"
HOW_TO_GET_IT = "needs Postgres's server: install it (e.g. `sudo apt-get install postgresql`), as CI does"
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
            command = ["runuser", "-u", self.user, "--", *command]
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
        pytest.skip(HOW_TO_GET_IT)
    server = ThrowawayPostgres(max_connections=200).start()
    yield server
    server.remove()
