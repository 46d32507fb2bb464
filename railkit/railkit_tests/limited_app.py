"""A fixture app whose views declare their own rate limits, in both decorator orders, as an owner writes them.

Every answer names the worker that gave it (X-Worker-Pid), 429s included.
gunicorn serves it as `railkit_tests.limited_app:create_app()`.
"""

import os

from flask import Blueprint, Flask

import railkit

bp = Blueprint("limited", __name__)
# A blueprint whose every view is left out of the default limit.
open_bp = Blueprint("open", __name__, url_prefix="/open")
railkit.exempt(open_bp)


@bp.get("/")
def index():
    """Counted against the default limit (RATE_LIMIT)."""
    return {"message": "default limit"}


@bp.get("/login")
@railkit.limit("3/minute")
def login():
    """Its own limit, the decorator below the route's (the usual order)."""
    return {"message": "three a minute"}


@railkit.limit("2/minute;50/hour")
@bp.get("/search")
def search():
    """Its own limits, the decorator above the route's."""
    return {"message": "two a minute, fifty an hour"}


@bp.get("/ping")
@railkit.exempt
def ping():
    """Left out of the default limit."""
    return {"message": "never limited"}


@railkit.exempt
@bp.get("/pong")
def pong():
    """Left out of the default limit, the decorator above the route's."""
    return {"message": "never limited"}


@open_bp.get("/status")
def status():
    """In an exempt blueprint."""
    return {"message": "never limited"}


def create_app(test_config: dict | None = None) -> Flask:
    app = Flask(__name__)
    railkit.init_app(app, test_config)
    app.register_blueprint(bp)
    app.register_blueprint(open_bp)

    @app.after_request
    def name_the_worker(response):
        response.headers["X-Worker-Pid"] = str(os.getpid())
        return response

    return app
