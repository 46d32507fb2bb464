"""The body of a project's migrations/env.py: Alembic's migrations, one run at a time, never stalling live traffic.

Every online run (`python -m railkit.db migrate`, or `alembic upgrade head`
by hand) connects to Postgres itself (DATABASE_UNPOOLED_URL past a pooler)
and takes a Postgres advisory lock: a second run waits for the first (at most
DATABASE_MIGRATION_WAIT), then finds nothing left to do. The migrations run
in one transaction (Postgres's DDL is transactional): a failure leaves the
schema as it was. Each statement waits at most DATABASE_MIGRATION_LOCK_TIMEOUT
for a table's lock, since live queries queue behind a waiting ALTER TABLE;
then the attempt is rolled back and retried, and after the last retry the run
fails. The lock ends with the run's session, even when the run is killed.
"""

import itertools
import logging
import os
import time

import psycopg.errors
from sqlalchemy import create_engine, exc, pool, text

from .. import project
from .config import (
    CONNECT_TIMEOUT,
    MigrationSettings,
    read_connections,
    read_migration_settings,
    refuse_shared_session,
)
from .engines import APPLICATION_NAME_BYTES
from .messages import first_line

log = logging.getLogger(__name__)

# One key per database for every service using railkit ("railkit" in ASCII, as a bigint).
MIGRATION_LOCK_KEY = 0x7261696C6B6974
# Where migrate.py hands its checked settings to env.py.
SETTINGS_ATTRIBUTE = "railkit.migration"
# Pause before retry n: 1, 2, 4, 8 s, then 10 s; live queries run meanwhile.
LONGEST_PAUSE = 10.0
# How soon a backend whose client died notices it mid-statement (ms, Postgres 14+): a killed run's lock ends then.
CLIENT_CHECK_MS = 1000


class MigrationGaveUp(RuntimeError):
    """A migration run could not get the locks it needs in time; nothing was applied. One line says why."""


def run_migrations(context, target_metadata) -> None:
    """Run Alembic's pending migrations for `target_metadata`'s tables, holding the migration lock."""
    if context.is_offline_mode():
        # `alembic upgrade --sql`: print the SQL, connect to nothing.
        context.configure(url=_database_url(context), target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    options = context.config.attributes.get(SETTINGS_ATTRIBUTE) or read_migration_settings()
    shared = context.config.attributes.get("connection")
    if shared is not None:
        _run_locked(context, shared, target_metadata, options)
        return
    name = f"{project.NAME} migration {os.getpid()}"[:APPLICATION_NAME_BYTES]
    engine = create_engine(
        _database_url(context),
        poolclass=pool.NullPool,
        connect_args={"application_name": name, "connect_timeout": CONNECT_TIMEOUT},
    )
    try:
        with engine.connect() as connection:
            _run_locked(context, connection, target_metadata, options)
    finally:
        engine.dispose()


def _database_url(context) -> str:
    """migrate.py's URL when it runs Alembic, else Postgres itself as the environment names it (alembic by hand)."""
    configured = context.config.get_main_option("sqlalchemy.url")
    if configured:
        return configured
    connections = read_connections(os.environ)
    refuse_shared_session(connections)
    return connections.session_url


def _run_locked(context, connection, target_metadata, options: MigrationSettings) -> None:
    _take_migration_lock(connection, options)
    try:
        _migrate(context, connection, target_metadata, options)
    finally:
        _release_migration_lock(connection)


def _take_migration_lock(connection, options: MigrationSettings) -> None:
    if connection.dialect.server_version_info >= (14,):
        connection.exec_driver_sql(f"SET client_connection_check_interval = {CLIENT_CHECK_MS}")
    connection.exec_driver_sql(f"SET lock_timeout = {round(options.wait_s * 1000)}")
    key = {"key": MIGRATION_LOCK_KEY}
    if not connection.execute(text("SELECT pg_try_advisory_lock(:key)"), key).scalar():
        log.info(
            "Waiting for another migration run to finish (advisory lock %s, at most %gs)",
            MIGRATION_LOCK_KEY,
            options.wait_s,
        )
        try:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), key)
        except exc.OperationalError as error:
            if not isinstance(error.orig, psycopg.errors.LockNotAvailable):
                raise
            connection.rollback()
            raise MigrationGaveUp(
                f"another migration run held the migration lock for more than DATABASE_MIGRATION_WAIT="
                f"{options.wait_s:g}s{_oldest_transaction(connection)}"
            ) from error
    # Session settings, kept past this commit and past the rollback of a failed attempt.
    connection.exec_driver_sql(f"SET lock_timeout = {round(options.lock_timeout_s * 1000)}")
    connection.commit()


def _migrate(context, connection, target_metadata, options: MigrationSettings) -> None:
    """Apply the pending migrations in one transaction; on a lock timeout roll back, pause, and try again."""
    for attempt in itertools.count(1):
        try:
            _apply(context, connection, target_metadata)
            return
        except exc.OperationalError as error:
            if not isinstance(error.orig, psycopg.errors.LockNotAvailable):
                raise
            blocker = _oldest_transaction(connection)
            if attempt > options.retries:
                raise MigrationGaveUp(
                    f"a table lock was not had within DATABASE_MIGRATION_LOCK_TIMEOUT={options.lock_timeout_s:g}s "
                    f"in {attempt} attempts{blocker}; nothing applied"
                ) from error
            pause = min(2.0 ** (attempt - 1), LONGEST_PAUSE)
            log.warning(
                "Migration attempt %s waited %gs for a table lock and was rolled back%s; retrying in %gs",
                attempt,
                options.lock_timeout_s,
                blocker,
                pause,
                extra={"attempt": attempt, "retries": options.retries},
            )
            time.sleep(pause)


def _apply(context, connection, target_metadata) -> None:
    """Every pending migration in one transaction, rolled back on any failure, which is what is raised.

    Not Alembic's begin_transaction(): its rollback, on a connection the server
    has closed, raises over the error that ended the migration.
    """
    context.configure(connection=connection, target_metadata=target_metadata)
    transaction = connection.begin()
    try:
        context.run_migrations()
        transaction.commit()
    except BaseException:
        try:
            transaction.rollback()
        except exc.DBAPIError as error:
            # The session is gone, and the server rolled its transaction back with it.
            log.info("Could not roll back on a broken connection: %s", first_line(error))
        raise


def _oldest_transaction(connection) -> str:
    """', the oldest open transaction: pid N (name), open for S s', or nothing when there is none (or no answer)."""
    query = text(
        "SELECT pid, application_name, extract(epoch FROM now() - xact_start) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL "
        "ORDER BY xact_start LIMIT 1"
    )
    try:
        row = connection.execute(query).first()
        connection.rollback()
    except exc.DBAPIError:
        return ""
    if row is None:
        return ""
    pid, name, seconds = row
    return f"; the oldest open transaction: pid {pid}{f' ({name})' if name else ''}, open for {float(seconds):.0f}s"


def _release_migration_lock(connection) -> None:
    """Unlock, or leave it to the session's end: never raise over the error that ended the run."""
    if connection.closed or connection.invalidated:
        return  # the session is gone, and its lock with it
    try:
        if connection.in_transaction():
            connection.rollback()
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
        connection.commit()
    except exc.DBAPIError as error:
        log.warning("Could not release the migration lock (it ends with the session): %s", first_line(error))
