"""The platform tests' own app: a Flask app wrapped by railkit.init_app, with routes of its own.

The platform's tests serve this, never the owner's routes, so replacing the
example routes never breaks them. gunicorn serves it as
`railkit_tests.fixture_app:create_app()`, with the project's gunicorn.conf.py.
"""

from flask import Blueprint, Flask, request

import railkit

bp = Blueprint("fixture", __name__)


@bp.get("/")
def index():
    """The simplest answer."""
    return {"message": "Hello from the fixture"}


@bp.post("/echo")
def echo():
    """The JSON body back; bad JSON, a wrong type or a body too large are answered as problems."""
    payload = request.get_json()
    if not isinstance(payload, dict):
        raise railkit.Problem(
            422, "The body must be a JSON object", errors=[{"pointer": "#", "detail": "expected an object"}]
        )
    return {"received": payload}


def create_app(test_config: dict | None = None) -> Flask:
    """An app as an owner builds one: Flask, the platform's layers, a blueprint."""
    app = Flask(__name__)
    railkit.init_app(app, test_config)
    app.register_blueprint(bp)
    return app
