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


def create_app(test_config: dict | None = None) -> Flask:
    """The fixture app, with the database."""
    app = fixture_app.create_app(test_config)
    railkit.db.init_app(app)
    app.register_blueprint(bp)
    return app
