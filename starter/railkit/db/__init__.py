"""Postgres for the app: SQLAlchemy 2 on psycopg 3, a session per request, pools sized to fit the server.

In create_app, after railkit.init_app(app):

    import railkit.db
    railkit.db.init_app(app)

Then, in a view: `from railkit.db import session` and `session.execute(...)`,
`session.add(...)`, `session.commit()`; models subclass `railkit.db.Model`.
Nothing connects at import or in gunicorn's master: each worker makes its own
pool on first use (engines.py), sized by the connection budget the master
decides at start (budget.py); migrations run once per deploy, never in a
worker (`python -m railkit.db migrate`, migrate.py).
"""

from sqlalchemy.orm import DeclarativeBase

from .engines import engine

__all__ = ["Model", "engine", "init_app", "ping", "run_migrations", "session", "upgrade"]

# Readiness checks by name, run by /health/ready (railkit.web.health).
READINESS_CHECKS = "railkit.readiness"


class Model(DeclarativeBase):
    """The base of your models: their tables are in Model.metadata, which Alembic compares with the database."""


def init_app(app) -> None:
    """Read DATABASE_URL and the pool's limits (refusing bad values), and give every request its own session.

    Call it after railkit.init_app(app). Opens no connection.
    """
    from . import cluster_link, engines, problems
    from .config import load_database_settings_or_exit
    from .request_session import end_request_session

    settings = load_database_settings_or_exit(app.config["SETTINGS"])
    engines.configure(settings)
    cluster_link.join_cluster()
    app.teardown_appcontext(end_request_session)
    problems.init_app(app)
    app.extensions.setdefault(READINESS_CHECKS, {})["postgres"] = ping
    app.extensions["railkit.db"] = settings


def ping() -> tuple[dict, str | None]:
    """Readiness: one `SELECT 1` through the worker's pool, bounded by the pool's and connect timeouts."""
    from .readiness import ping as run

    return run()


# Imported on first use: the session proxy needs Flask, migrations need Alembic (models need neither).
_PUBLIC = {
    "session": "railkit.db.request_session",
    "run_migrations": "railkit.db.alembic_env",
    "upgrade": "railkit.db.migrate",
}


def __getattr__(name):
    if name in _PUBLIC:
        from importlib import import_module

        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'railkit.db' has no attribute {name!r}")
