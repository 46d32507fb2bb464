"""The body of a project's migrations/env.py: Alembic's migrations, one run at a time, under an advisory lock.

Every online run (`python -m railkit.db migrate`, or `alembic upgrade head`
by hand) first takes a Postgres advisory lock on its connection: a second run
waits for the first, then finds nothing left to do. The migrations run in one
transaction (Postgres's DDL is transactional): a failure leaves the schema as
it was.
"""

import logging
import os

from sqlalchemy import create_engine, pool, text

from .config import parse_database_url

log = logging.getLogger(__name__)

# One key per database for every service using railkit ("railkit" in ASCII, as a bigint).
MIGRATION_LOCK_KEY = 0x7261696C6B6974


def run_migrations(context, target_metadata) -> None:
    """Run Alembic's pending migrations for `target_metadata`'s tables, holding the migration lock."""
    if context.is_offline_mode():
        # `alembic upgrade --sql`: print the SQL, connect to nothing.
        context.configure(url=_database_url(context), target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    shared = context.config.attributes.get("connection")
    if shared is not None:
        _run_locked(context, shared, target_metadata)
        return
    engine = create_engine(_database_url(context), poolclass=pool.NullPool)
    with engine.connect() as connection:
        _run_locked(context, connection, target_metadata)
    engine.dispose()


def _database_url(context) -> str:
    """migrate.py's URL when it runs Alembic, else DATABASE_URL (alembic's own commands run by hand)."""
    return context.config.get_main_option("sqlalchemy.url") or parse_database_url(os.environ.get("DATABASE_URL", ""))


def _run_locked(context, connection, target_metadata) -> None:
    if not connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY}).scalar():
        log.info("Waiting for another migration run to finish (advisory lock %s)", MIGRATION_LOCK_KEY)
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    connection.commit()
    try:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
        if connection.in_transaction():
            connection.commit()
    finally:
        if not connection.closed and not connection.invalidated:
            if connection.in_transaction():
                connection.rollback()
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
            connection.commit()
