"""Each process's own engine (and so its own pool), made on first use in that process.

gunicorn loads the app in the master and forks the workers from it. A pool
made there would be inherited: two processes writing to one socket, one's
COMMIT ending the other's transaction. So no connection is opened at import
or in the master: the engine is made lazily, in the process that uses it,
and an engine inherited from a parent is dropped without touching its
sockets (SQLAlchemy's recipe for forks: dispose(close=False)). Through a
pooler (PgBouncer) a connection carries no session state: no startup
options, and in transaction mode no prepared statements.
"""

import os
import threading
import traceback
from pathlib import Path

from sqlalchemy import Engine, create_engine, event

from .. import project
from .budget import Budget, outside_cluster
from .config import DatabaseSettings

# Postgres keeps at most 63 bytes of application_name.
APPLICATION_NAME_BYTES = 63

# Frames of these folders are the machinery, not the code that asked for a connection.
_MACHINERY = (str(Path(__file__).parent), f"{os.sep}sqlalchemy{os.sep}", f"{os.sep}flask{os.sep}", "<frozen ")

_lock = threading.Lock()
# role: what pg_stat_activity calls this process's connections ("worker" once gunicorn forked it).
_state = {"settings": None, "budget": None, "engine": None, "pid": None, "made_by": None, "role": "app"}


def configure(settings: DatabaseSettings, budget: Budget | None = None) -> None:
    """Say how this process's engines are made; an engine already made stays until the next fork or dispose."""
    _state["settings"] = settings
    if budget is not None or _state["budget"] is None:
        _state["budget"] = budget or outside_cluster(settings.pool_size)


def set_budget(budget: Budget) -> None:
    """The cluster's budget, decided in the master before any worker is forked."""
    _state["budget"] = budget


def current_budget() -> Budget | None:
    return _state["budget"]


def current_settings() -> DatabaseSettings | None:
    return _state["settings"]


def application_name(role: str | None = None) -> str:
    """What pg_stat_activity shows for this process's connections: the service, the role and the pid."""
    return f"{project.NAME} {role or _state['role']} {os.getpid()}"[:APPLICATION_NAME_BYTES]


def engine() -> Engine:
    """This process's engine, made on first use here; never one a parent process made."""
    made = _state["engine"]
    if made is not None and _state["pid"] == os.getpid():
        return made
    with _lock:
        if _state["engine"] is not None and _state["pid"] != os.getpid():
            # The parent's pool: its sockets are the parent's to close, so leave them alone.
            _state["engine"].dispose(close=False)
            _state["engine"] = None
        if _state["engine"] is None:
            _state["engine"] = _make_engine()
            _state["pid"] = os.getpid()
            _state["made_by"] = _caller()
        return _state["engine"]


def _caller() -> str:
    """file:line in function of the innermost frame outside railkit.db, SQLAlchemy and Flask."""
    for frame in reversed(traceback.extract_stack()):
        if not any(part in frame.filename for part in _MACHINERY):
            return f"{frame.filename}:{frame.lineno} in {frame.name}"
    return "unknown code"


def _make_engine() -> Engine:
    settings: DatabaseSettings | None = _state["settings"]
    if settings is None:
        raise RuntimeError("railkit.db is not set up: call railkit.db.init_app(app) in create_app")
    budget: Budget = _state["budget"]
    made = create_engine(
        settings.url,
        pool_size=budget.pool_size,
        max_overflow=budget.max_overflow,
        pool_timeout=settings.pool_timeout,
        # A connection the server closed (restart, failover, idle cut) is found before a request uses it.
        pool_pre_ping=True,
        connect_args=connect_arguments(settings),
    )
    if settings.pooler and settings.statement_timeout_ms:
        limit_each_transaction(made, settings.statement_timeout_ms)
    return made


def connect_arguments(settings: DatabaseSettings) -> dict:
    """psycopg's connect() arguments for request traffic, direct or through a pooler."""
    arguments = {"application_name": application_name(), "connect_timeout": settings.connect_timeout}
    if settings.pooler is None and settings.statement_timeout_ms:
        # Set once per session, for free. PgBouncer refuses the startup parameter ("unsupported startup
        # parameter: options"), and a pooled session's SET would outlive the transaction on a shared server.
        arguments["options"] = f"-c statement_timeout={settings.statement_timeout_ms}"
    if settings.pooler == "transaction":
        # psycopg prepares a query it has run 5 times on a connection, as "_pg3_N" on the server connection
        # it had then; the pooler hands the next transaction another: "prepared statement "_pg3_1" already
        # exists", or does not exist. None: never prepare.
        arguments["prepare_threshold"] = None
    return arguments


def limit_each_transaction(made: Engine, statement_timeout_ms: int) -> None:
    """statement_timeout as the first statement of every transaction (SET LOCAL ends with it: no state is left)."""
    statement = f"SET LOCAL statement_timeout = {int(statement_timeout_ms)}"

    @event.listens_for(made, "begin")
    def per_transaction(connection) -> None:
        connection.exec_driver_sql(statement)


def dispose() -> None:
    """Close this process's connections (a worker leaving); the next use makes a new engine."""
    with _lock:
        made, _state["engine"] = _state["engine"], None
        if made is not None and _state["pid"] == os.getpid():
            made.dispose()
        elif made is not None:
            made.dispose(close=False)


def dispose_own() -> str | None:
    """Close the connections of an engine this process made; where it was made, or None when there was none."""
    with _lock:
        made, made_by = _state["engine"], _state["made_by"]
        if made is None or _state["pid"] != os.getpid():
            return None
        _state["engine"] = None
        made.dispose()
        return made_by


def forget_inherited() -> None:
    """In a freshly forked worker: drop an engine the parent made, leaving its sockets to the parent."""
    with _lock:
        _state["role"] = "worker"
        if _state["engine"] is not None and _state["pid"] != os.getpid():
            _state["engine"].dispose(close=False)
            _state["engine"] = None
