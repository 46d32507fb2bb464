"""The database's settings: its URLs, the pooler in front of it and the pool's limits, each bad value refused by name.

Read when the app calls railkit.db.init_app, which gunicorn's master does
while it loads the app, before any worker exists, and by the migrations: a
nonsense value stops the start with one JSON line naming the variable (exit
78), like railkit.settings. Requests go through DATABASE_URL (Railway's
PgBouncer, once added); migrations and their advisory lock need a session of
their own, DATABASE_UNPOOLED_URL's.
"""

import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit, urlunsplit

from ..settings import EXIT_BAD_CONFIG, SettingError, Settings, _Reader

# What Railway's Postgres and most hosts hand out, and what SQLAlchemy calls the psycopg 3 driver.
ACCEPTED_SCHEMES = ("postgres", "postgresql", "postgresql+psycopg")
DRIVER_SCHEME = "postgresql+psycopg"
# Connections kept free of the service's pools: the pre-deploy migration, an admin's psql, one spare.
RESERVED_CONNECTIONS = 3
# Longest wait for a free connection of the worker's pool before the request gets a 503 (s).
POOL_TIMEOUT = 3.0
# Longest wait for Postgres to accept a new connection (s; libpq counts whole seconds).
CONNECT_TIMEOUT = 3
# A query may use this share of REQUEST_TIMEOUT: it is cancelled, and answered, before the watchdog acts.
STATEMENT_SHARE = 0.75
# DATABASE_POOLER: what sits between the service and Postgres. "auto": a transaction-mode pooler when
# DATABASE_UNPOOLED_URL names another address than DATABASE_URL (Railway's PgBouncer adds it, in
# transaction mode unless its owner chose otherwise), else none.
POOLER_MODES = ("auto", "transaction", "session", "none")
# What Railway's PgBouncer lets clients open per PgBouncer replica (databases/postgresql-pgbouncer.md):
# MAX_CLIENT_CONN clients in transaction mode; in session mode a client holds one of its DEFAULT_POOL_SIZE
# server connections for as long as it stays connected, so those are the limit.
POOLER_CONNECTIONS = {"transaction": 1000, "session": 20}
# A migration's DDL waits this long for a table's lock (s): while it waits, every later query on that
# table queues behind its request, so live traffic stalls at most this long per attempt.
MIGRATION_LOCK_TIMEOUT = 3.0
# Attempts after the first when a lock was not had in time.
MIGRATION_RETRIES = 5
# How long a run waits for another run's advisory lock (s): a deploy's migration behind another's.
MIGRATION_WAIT = 600.0


@dataclass(frozen=True)
class DatabaseSettings:
    """The database's configuration, valid by construction."""

    # A SQLAlchemy URL for the psycopg 3 driver, for requests; it holds the password: never log it.
    url: str
    # Connections one worker may hold (DATABASE_POOL_SIZE); None: the connection budget decides.
    pool_size: int | None
    pool_timeout: float
    # Server-side limit on every statement (ms); 0: none.
    statement_timeout_ms: int
    # Replicas of this service sharing the database (DATABASE_REPLICAS); None: the plan's production count.
    replicas: int | None
    reserved: int
    connect_timeout: int = CONNECT_TIMEOUT
    # The direct URL (DATABASE_UNPOOLED_URL), for what needs a session of its own; None: DATABASE_URL is direct.
    unpooled_url: str | None = None
    # "transaction" or "session" when DATABASE_URL goes through a pooler; None when it reaches Postgres itself.
    pooler: str | None = None
    # Connections other services of the project hold on the same database (a worker, a cron job).
    others: int = 0
    # Client connections the pooler accepts from this service (DATABASE_POOLER_CONNECTIONS, or Railway's default).
    pooler_connections: int | None = None
    pooler_connections_declared: bool = False

    @property
    def session_url(self) -> str:
        """Where migrations, advisory locks and anything session-scoped connect: Postgres itself."""
        return self.unpooled_url or self.url

    @property
    def host(self) -> str:
        """Where requests go, without credentials, for log lines."""
        return describe_host(self.url)


def describe_host(url: str) -> str:
    """host:port/database of a URL, without credentials."""
    parts = urlsplit(url)
    host = parts.hostname or parse_qs(parts.query).get("host", ["?"])[0]
    return f"{host}:{parts.port or 5432}{parts.path}"


@dataclass(frozen=True)
class Connections:
    """Where requests go, where session-scoped work goes, and the pooler between them, if any."""

    url: str
    unpooled_url: str | None
    pooler: str | None

    @property
    def session_url(self) -> str:
        return self.unpooled_url or self.url


def read_connections(environ: Mapping[str, str] = os.environ) -> Connections:
    """DATABASE_URL, DATABASE_UNPOOLED_URL and DATABASE_POOLER, checked together; SettingError for the first bad one."""
    raw = environ.get("DATABASE_URL")
    if raw is None or not raw.strip():
        raise SettingError(
            "DATABASE_URL", "", "is not set", "add a Postgres service and set DATABASE_URL=${{Postgres.DATABASE_URL}}"
        )
    url = parse_database_url(raw)
    # Empty counts as unset: railway.ts refers to ${{Postgres.DATABASE_UNPOOLED_URL}} whether or not
    # PgBouncer is on, and the reference is empty while it is off.
    unpooled_raw = environ.get("DATABASE_UNPOOLED_URL", "")
    unpooled = parse_database_url(unpooled_raw, "DATABASE_UNPOOLED_URL") if unpooled_raw.strip() else None
    if unpooled == url:
        unpooled = None
    mode = _Reader(environ).choice("DATABASE_POOLER", "auto", POOLER_MODES)
    if mode == "auto":
        mode = "transaction" if unpooled else "none"
    return Connections(url=url, unpooled_url=unpooled, pooler=None if mode == "none" else mode)


def refuse_shared_session(connections: Connections) -> None:
    """SettingError when session-scoped work (a migration's lock) would go through a transaction-mode pooler."""
    if connections.pooler == "transaction" and connections.unpooled_url is None:
        raise SettingError(
            "DATABASE_UNPOOLED_URL",
            "",
            "is not set, and DATABASE_URL goes through a transaction-mode pooler (DATABASE_POOLER=transaction), "
            "where an advisory lock and its unlock can land on different server connections",
            "set DATABASE_UNPOOLED_URL=${{Postgres.DATABASE_UNPOOLED_URL}} (Postgres itself, not PgBouncer)",
        )


def parse_database_url(value: str, variable: str = "DATABASE_URL") -> str:
    """The URL as SQLAlchemy's psycopg 3 URL; SettingError naming `variable` when it is no Postgres URL."""
    text = value.strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 (a port out of range raises ValueError)
    except ValueError:
        parts = None
    socket_dir = parse_qs(parts.query).get("host") if parts else None
    if parts is None or parts.scheme not in ACCEPTED_SCHEMES or not (parts.hostname or socket_dir):
        raise SettingError(
            variable,
            _without_password(text),
            "is not a Postgres URL",
            f"use postgresql://user:password@host:5432/database (Railway: ${{{{Postgres.{variable}}}}})",
        )
    return urlunsplit((DRIVER_SCHEME, *parts[1:]))


def _without_password(text: str) -> str:
    try:
        parts = urlsplit(text)
        if parts.password:
            return text.replace(f":{parts.password}@", ":<hidden>@", 1)
    except ValueError:
        pass
    return text if "@" not in text else "<hidden>"


def read_database_settings(settings: Settings, environ: Mapping[str, str] = os.environ) -> DatabaseSettings:
    """Parse the database's variables, raising SettingError for the first bad value."""
    connections = read_connections(environ)
    request_timeout = settings.request_timeout
    default_statement_ms = int(request_timeout * 1000 * STATEMENT_SHARE)
    statement_ms = _integer(environ, "DATABASE_STATEMENT_TIMEOUT_MS", default_statement_ms, 0, 86_400_000)
    if request_timeout and not 0 < statement_ms < request_timeout * 1000:
        raise SettingError(
            "DATABASE_STATEMENT_TIMEOUT_MS",
            str(statement_ms),
            f"is not under REQUEST_TIMEOUT={request_timeout}s",
            f"use a number of milliseconds from 1 to {request_timeout * 1000 - 1}, or raise REQUEST_TIMEOUT",
        )
    pool_timeout = min(POOL_TIMEOUT, request_timeout / 4) if request_timeout else POOL_TIMEOUT
    pooler = connections.pooler
    return DatabaseSettings(
        url=connections.url,
        pool_size=_integer(environ, "DATABASE_POOL_SIZE", None, 1, 1000),
        pool_timeout=_number(environ, "DATABASE_POOL_TIMEOUT", pool_timeout, 0.1, 60.0),
        statement_timeout_ms=statement_ms,
        replicas=_integer(environ, "DATABASE_REPLICAS", None, 1, 100),
        reserved=_integer(environ, "DATABASE_RESERVED_CONNECTIONS", RESERVED_CONNECTIONS, 0, 1000),
        others=_integer(environ, "DATABASE_OTHER_CONNECTIONS", 0, 0, 100_000),
        unpooled_url=connections.unpooled_url,
        pooler=pooler,
        pooler_connections=_integer(environ, "DATABASE_POOLER_CONNECTIONS", POOLER_CONNECTIONS[pooler], 1, 100_000)
        if pooler
        else None,
        pooler_connections_declared=environ.get("DATABASE_POOLER_CONNECTIONS") is not None,
    )


def _integer(environ: Mapping[str, str], name: str, default: int | None, low: int, high: int) -> int | None:
    """As railkit.settings reads every whole number: unset is the default, anything else (empty too) must parse."""
    return _Reader(environ).integer(name, default, low=low, high=high)


def _number(environ: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    value = environ.get(name)
    if value is None:
        return default
    try:
        number = float(value.strip())
    except ValueError:
        raise SettingError(name, value, "is not a number", f"use seconds from {low:g} to {high:g}") from None
    if not low <= number <= high:
        raise SettingError(name, value, "is out of range", f"use seconds from {low:g} to {high:g}")
    return number


@dataclass(frozen=True)
class MigrationSettings:
    """How a migration run waits: for another run's lock, and for the table locks its DDL needs."""

    # Seconds each statement may wait for a table lock (lock_timeout) before the attempt is rolled back.
    lock_timeout_s: float = MIGRATION_LOCK_TIMEOUT
    # Attempts after the first, each after a pause in which live queries go on.
    retries: int = MIGRATION_RETRIES
    # Seconds a run waits for another run (another deploy's) to finish.
    wait_s: float = MIGRATION_WAIT


def read_migration_settings(environ: Mapping[str, str] = os.environ) -> MigrationSettings:
    """DATABASE_MIGRATION_LOCK_TIMEOUT, DATABASE_MIGRATION_RETRIES and DATABASE_MIGRATION_WAIT; SettingError if bad."""
    return MigrationSettings(
        lock_timeout_s=_number(environ, "DATABASE_MIGRATION_LOCK_TIMEOUT", MIGRATION_LOCK_TIMEOUT, 0.1, 600.0),
        retries=_integer(environ, "DATABASE_MIGRATION_RETRIES", MIGRATION_RETRIES, 0, 100),
        wait_s=_number(environ, "DATABASE_MIGRATION_WAIT", MIGRATION_WAIT, 1.0, 3600.0),
    )


def refuse(error: SettingError) -> None:
    """Stop the start with one JSON line naming the variable (exit 78)."""
    from ..logs import configure_logging

    if not logging.getLogger().handlers:
        configure_logging("info")
    logging.getLogger(__name__).error(
        "Refusing to start: %s", error, extra={"variable": error.variable, "value": error.value}
    )
    sys.exit(EXIT_BAD_CONFIG)


def load_database_settings_or_exit(settings: Settings, environ: Mapping[str, str] = os.environ) -> DatabaseSettings:
    """Return the database's settings, or refuse the start with one JSON line naming the variable."""
    try:
        return read_database_settings(settings, environ)
    except SettingError as error:
        refuse(error)
