"""`python -m railkit.db migrate`: bring the database to the latest migration, once per deploy.

Railway's pre-deploy command runs it in its own container, before the new
deployment takes traffic; a non-zero exit fails that deploy and the old one
keeps serving. Workers never migrate. Runs of it never interleave: the
migrations' env.py holds a Postgres advisory lock while they run, on a
session of their own (DATABASE_UNPOOLED_URL past Railway's PgBouncer), and
gives up cleanly when live traffic holds the tables too long (alembic_env.py).
"""

import logging
import os
import sys
import time
from pathlib import Path

from ..logs import configure_logging
from ..settings import EXIT_BAD_CONFIG, SettingError
from .config import read_connections, read_migration_settings, refuse_shared_session
from .messages import first_line

log = logging.getLogger("railkit.db.migrate")

# Exit status of a migration that failed (the deploy fails with it).
EXIT_FAILED = 1
# The project's Alembic configuration, at its root.
DEFAULT_CONFIG = "alembic.ini"
# Alembic's start-up chatter ("setup plugin alembic.autogenerate.schemas", ...), one line per plugin.
QUIET_LOGGERS = ("alembic.runtime.plugins",)


def alembic_config(path: str, url: str):
    """Alembic's configuration from `path`, with DATABASE_URL as its database."""
    from alembic.config import Config

    config = Config(path)
    # Relative script_location is relative to the .ini's folder, wherever the command runs from.
    location = config.get_main_option("script_location") or "migrations"
    config.set_main_option("script_location", str((Path(path).parent / location).resolve()))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(config_path: str = DEFAULT_CONFIG, environ=os.environ, revision: str = "head") -> None:
    """Apply every pending migration (raises on failure; the schema is left as it was).

    Connects to Postgres itself: DATABASE_UNPOOLED_URL when set, else DATABASE_URL (refused when
    that goes through a transaction-mode pooler, where the migration lock would not hold).
    """
    from alembic import command

    from .alembic_env import SETTINGS_ATTRIBUTE

    connections = read_connections(environ)
    refuse_shared_session(connections)
    config = alembic_config(config_path, connections.session_url)
    config.attributes[SETTINGS_ATTRIBUTE] = read_migration_settings(environ)
    command.upgrade(config, revision)


def main(argv: list[str]) -> int:
    configure_logging(os.environ.get("LOG_LEVEL", "info").lower())
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    if not argv or argv[0] != "migrate":
        log.error("Usage: python -m railkit.db migrate [--config alembic.ini]")
        return 2
    config_path = argv[argv.index("--config") + 1] if "--config" in argv[:-1] else DEFAULT_CONFIG
    if not Path(config_path).is_file():
        log.error("No Alembic configuration at %s: run from the project's root", config_path)
        return EXIT_BAD_CONFIG
    from .alembic_env import MigrationGaveUp

    started = time.monotonic()
    try:
        upgrade(config_path)
    except SettingError as error:
        log.error("Refusing to migrate: %s", error, extra={"variable": error.variable})
        return EXIT_BAD_CONFIG
    except MigrationGaveUp as error:
        log.error("Migration gave up: %s", error)
        return EXIT_FAILED
    except Exception as error:
        log.exception("Migration failed, nothing applied: %s: %s", type(error).__name__, first_line(error))
        return EXIT_FAILED
    log.info("Database migrated to the latest revision in %.1fs", time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
