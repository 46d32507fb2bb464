"""The database's failures as problem+json answers: busy, unreachable or too slow is never a 500.

- every pooled connection of the worker is in use for longer than
  DATABASE_POOL_TIMEOUT: 503 with Retry-After;
- Postgres refused, dropped or is restarting: 503 with Retry-After;
- a statement ran past its statement_timeout and Postgres cancelled it: 504.

Each request's session is closed at teardown, so the worker goes on serving.
"""

import logging

import psycopg.errors
from flask import Flask
from sqlalchemy import exc

from ..web.problems import handle_unexpected, problem_response
from . import engines
from .messages import first_line

log = logging.getLogger(__name__)

# Seconds a client should wait before retrying when the database is busy or away.
RETRY_AFTER_BUSY = 1
RETRY_AFTER_UNAVAILABLE = 2


def pool_exhausted(error: exc.TimeoutError):
    budget = engines.current_budget()
    held = f"all {budget.per_worker} database connections" if budget else "every database connection"
    log.warning("Database pool exhausted: %s", error, extra={"problem": "pool_exhausted"})
    return problem_response(
        503,
        f"The service is busy: {held} of this worker stayed in use; retry shortly",
        headers={"Retry-After": str(RETRY_AFTER_BUSY)},
    )


def database_error(error: exc.DBAPIError):
    if isinstance(error.orig, psycopg.errors.QueryCanceled):
        log.warning("Database statement cancelled: %s", first_line(error), extra={"problem": "statement_timeout"})
        return problem_response(504, "A database query ran past its statement_timeout and was cancelled")
    if isinstance(error, exc.OperationalError | exc.InterfaceError) or error.connection_invalidated:
        log.warning("Database unavailable: %s", first_line(error), extra={"problem": "database_unavailable"})
        return problem_response(
            503,
            "The database is unavailable; retry shortly",
            headers={"Retry-After": str(RETRY_AFTER_UNAVAILABLE)},
        )
    # A query's own mistake (syntax, a constraint the route did not handle): a bug, answered as any other.
    return handle_unexpected(error)


def init_app(app: Flask) -> None:
    app.register_error_handler(exc.TimeoutError, pool_exhausted)
    app.register_error_handler(exc.DBAPIError, database_error)
