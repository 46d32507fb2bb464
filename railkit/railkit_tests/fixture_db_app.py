"""The platform's database tests' app: the fixture app with railkit.db and routes that use the pool.

gunicorn serves it as `railkit_tests.fixture_db_app:create_app()`.
"""

import os

from flask import Blueprint, Flask, request
from sqlalchemy import text

import railkit.db
from railkit.db import session

from . import fixture_app

bp = Blueprint("fixture_db", __name__, url_prefix="/db")


@bp.get("/backend")
def backend():
    """Which Postgres backend served this request, and which process asked."""
    return {"backend_pid": session.execute(text("SELECT pg_backend_pid()")).scalar(), "worker_pid": os.getpid()}


@bp.get("/sleep")
def sleep():
    """A query that takes `seconds` on the server (pg_sleep)."""
    seconds = float(request.args.get("seconds", "0"))
    session.execute(text("SELECT pg_sleep(:seconds)"), {"seconds": seconds})
    return {"slept": seconds, "worker_pid": os.getpid()}


@bp.post("/rows")
def create_row():
    """Insert a row of fixture_rows (the test creates the table), commit, and read it back: two transactions."""
    name = request.get_json()["name"]
    row_id = session.execute(text("INSERT INTO fixture_rows (name) VALUES (:name) RETURNING id"), {"name": name})
    row_id = row_id.scalar()
    session.commit()
    found = session.execute(text("SELECT id, name FROM fixture_rows WHERE id = :id"), {"id": row_id}).one()
    return {"id": found.id, "name": found.name}, 201


@bp.get("/setting")
def setting():
    """A server setting as this request's transaction sees it (SHOW)."""
    name = request.args["name"]
    if not name.replace("_", "").isalpha():
        return {"error": "a setting's name"}, 400
    return {"value": session.execute(text(f"SHOW {name}")).scalar()}


def create_app(test_config: dict | None = None) -> Flask:
    """The fixture app, with the database; FIXTURE_QUERY_IN_CREATE_APP=1 queries it there, as owners sometimes do."""
    app = fixture_app.create_app(test_config)
    railkit.db.init_app(app)
    app.register_blueprint(bp)
    if os.environ.get("FIXTURE_QUERY_IN_CREATE_APP"):
        with railkit.db.engine().connect() as connection:
            connection.execute(text("SELECT 1"))
    return app
