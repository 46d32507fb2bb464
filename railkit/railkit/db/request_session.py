"""One SQLAlchemy session per request: made on first use, closed when the request ends.

`session` is a proxy: `session.execute(...)`, `session.add(...)`,
`session.commit()` act on the current request's own session, which holds at
most one of the worker's pooled connections and gives it back when the
request's app context ends (teardown), committed or not.
"""

import logging

from flask.globals import app_ctx
from sqlalchemy import exc
from sqlalchemy.orm import Session, scoped_session, sessionmaker

from .engines import engine
from .messages import first_line

log = logging.getLogger(__name__)


class _EngineOfThisProcess(Session):
    """A session bound to this process's engine, made when the session is (never at import)."""

    def __init__(self, **options):
        options["bind"] = engine()
        super().__init__(**options)


def _current_request() -> int:
    # The app context: one per request (and per `with app.app_context()`), per thread or greenlet.
    return id(app_ctx._get_current_object())


# expire_on_commit=False: objects stay readable after commit, to be answered as JSON.
session: scoped_session[Session] = scoped_session(
    sessionmaker(class_=_EngineOfThisProcess, expire_on_commit=False), scopefunc=_current_request
)


def end_request_session(_error: BaseException | None = None) -> None:
    """Close the request's session (rolling back what it did not commit) and free its connection; never raises.

    When the server went away mid-request the rollback fails: SQLAlchemy has
    then invalidated the connection (the pool drops it), and the request was
    already answered (503), so the failure is only logged.
    """
    try:
        session.remove()
    except exc.DBAPIError as error:
        session.registry.clear()
        log.info("Dropped a database connection the server closed: %s", first_line(error))
