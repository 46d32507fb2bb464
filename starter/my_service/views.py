"""Example routes: replace them with your own. They show the patterns to keep."""

from flask import Blueprint, request

from railkit import Problem

bp = Blueprint("views", __name__)

SERVICE_NAME = "my-service"


@bp.get("/")
def index():
    """Say hello; the simplest route."""
    return {"message": f"Hello from {SERVICE_NAME}"}


@bp.post("/echo")
def echo():
    """Return the JSON body; bad JSON, a wrong type or a body too large are answered as problems."""
    payload = request.get_json()
    if not isinstance(payload, dict):
        raise Problem(422, "The body must be a JSON object", errors=[{"pointer": "#", "detail": "expected an object"}])
    return {"received": payload}
