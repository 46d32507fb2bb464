"""Each process's own engine (and so its own pool), made on first use in that process.

gunicorn loads the app in the master and forks the workers from it. A pool
made there would be inherited: two processes writing to one socket, one's
COMMIT ending the other's transaction. So no connection is opened at import
or in the master: the engine is made lazily, in the process that uses it,
and an engine inherited from a parent is dropped without touching its
sockets (SQLAlchemy's recipe for forks: dispose(close=False)).
"""

import os
import threading

from sqlalchemy import Engine, create_engine

from .. import project
from .budget import Budget, outside_cluster
from .config import DatabaseSettings

# Postgres keeps at most 63 bytes of application_name.
APPLICATION_NAME_BYTES = 63

_lock = threading.Lock()
_state = {"settings": None, "budget": None, "engine": None, "pid": None}


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


def application_name(role: str = "worker") -> str:
    """What pg_stat_activity shows for this process's connections: the service, the role and the pid."""
    return f"{project.NAME} {role} {os.getpid()}"[:APPLICATION_NAME_BYTES]


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
        return _state["engine"]


def _make_engine() -> Engine:
    settings: DatabaseSettings | None = _state["settings"]
    if settings is None:
        raise RuntimeError("railkit.db is not set up: call railkit.db.init_app(app) in create_app")
    budget: Budget = _state["budget"]
    options = f"-c statement_timeout={settings.statement_timeout_ms}" if settings.statement_timeout_ms else ""
    return create_engine(
        settings.url,
        pool_size=budget.pool_size,
        max_overflow=budget.max_overflow,
        pool_timeout=settings.pool_timeout,
        # A connection the server closed (restart, failover, idle cut) is found before a request uses it.
        pool_pre_ping=True,
        connect_args={
            "application_name": application_name(),
            "connect_timeout": settings.connect_timeout,
            "options": options,
        },
    )


def dispose() -> None:
    """Close this process's connections (a worker leaving); the next use makes a new engine."""
    with _lock:
        made, _state["engine"] = _state["engine"], None
        if made is not None and _state["pid"] == os.getpid():
            made.dispose()
        elif made is not None:
            made.dispose(close=False)


def forget_inherited() -> None:
    """In a freshly forked worker: drop an engine the parent made, leaving its sockets to the parent."""
    with _lock:
        if _state["engine"] is not None and _state["pid"] != os.getpid():
            _state["engine"].dispose(close=False)
            _state["engine"] = None
