"""The database's part of /health/ready: can this worker get a connection and run a query, quickly."""

import logging
import time

from sqlalchemy import exc, text

from .engines import engine
from .messages import first_line

log = logging.getLogger(__name__)


def ping() -> tuple[dict, str | None]:
    """(the check's entry, None) when Postgres answers; (the entry, why not) when it does not.

    Bounded by DATABASE_POOL_TIMEOUT (every connection busy) and the connect timeout (server away).
    The reason goes to the log, not to the public answer (it names hosts).
    """
    started = time.perf_counter()
    failure = None
    try:
        with engine().connect() as connection:
            connection.execute(text("SELECT 1"))
    except exc.TimeoutError:
        failure = "Postgres at DATABASE_URL: every pooled connection of this worker is busy"
    except exc.DBAPIError as error:
        failure = "Postgres at DATABASE_URL does not answer"
        log.warning("Readiness: %s: %s", failure, first_line(error))
    elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
    entry = {
        "componentType": "datastore",
        "observedValue": elapsed_ms,
        "observedUnit": "ms",
        "status": "fail" if failure else "pass",
    }
    return entry, failure
