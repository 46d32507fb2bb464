"""The database's settings: DATABASE_URL and the pool's limits, read once at start, each bad value refused by name.

Read when the app calls railkit.db.init_app, which gunicorn's master does
while it loads the app, before any worker exists: a nonsense value stops the
start with one JSON line naming the variable (exit 78), like railkit.settings.
"""

import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit, urlunsplit

from ..settings import EXIT_BAD_CONFIG, SettingError, Settings

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


@dataclass(frozen=True)
class DatabaseSettings:
    """The database's configuration, valid by construction."""

    # A SQLAlchemy URL for the psycopg 3 driver; it holds the password: never log it.
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

    @property
    def host(self) -> str:
        """Where the database is, without credentials, for log lines."""
        parts = urlsplit(self.url)
        host = parts.hostname or parse_qs(parts.query).get("host", ["?"])[0]
        return f"{host}:{parts.port or 5432}{parts.path}"


def parse_database_url(value: str) -> str:
    """The URL as SQLAlchemy's psycopg 3 URL; SettingError naming DATABASE_URL when it is no Postgres URL."""
    text = value.strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 (a port out of range raises ValueError)
    except ValueError:
        parts = None
    socket_dir = parse_qs(parts.query).get("host") if parts else None
    if parts is None or parts.scheme not in ACCEPTED_SCHEMES or not (parts.hostname or socket_dir):
        raise SettingError(
            "DATABASE_URL",
            _without_password(text),
            "is not a Postgres URL",
            "use postgresql://user:password@host:5432/database (Railway: ${{Postgres.DATABASE_URL}})",
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
    raw = environ.get("DATABASE_URL")
    if raw is None or not raw.strip():
        raise SettingError(
            "DATABASE_URL", "", "is not set", "add a Postgres service and set DATABASE_URL=${{Postgres.DATABASE_URL}}"
        )
    url = parse_database_url(raw)
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
    return DatabaseSettings(
        url=url,
        pool_size=_integer(environ, "DATABASE_POOL_SIZE", None, 1, 1000),
        pool_timeout=_number(environ, "DATABASE_POOL_TIMEOUT", pool_timeout, 0.1, 60.0),
        statement_timeout_ms=statement_ms,
        replicas=_integer(environ, "DATABASE_REPLICAS", None, 1, 100),
        reserved=_integer(environ, "DATABASE_RESERVED_CONNECTIONS", RESERVED_CONNECTIONS, 0, 1000),
    )


def _integer(environ: Mapping[str, str], name: str, default: int | None, low: int, high: int) -> int | None:
    value = environ.get(name)
    if value is None or not value.strip():
        return default
    try:
        number = int(value.strip())
    except ValueError:
        raise SettingError(name, value, "is not a whole number", f"use a number from {low} to {high}") from None
    if not low <= number <= high:
        raise SettingError(name, value, "is out of range", f"use a number from {low} to {high}")
    return number


def _number(environ: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    value = environ.get(name)
    if value is None or not value.strip():
        return default
    try:
        number = float(value.strip())
    except ValueError:
        raise SettingError(name, value, "is not a number", f"use seconds from {low:g} to {high:g}") from None
    if not low <= number <= high:
        raise SettingError(name, value, "is out of range", f"use seconds from {low:g} to {high:g}")
    return number


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
