"""The fixture app with routes for the connection tests: large answers, slow answers, files held open.

gunicorn serves it as `railkit_tests.big_answer_app:create_app()`.
"""

import threading
import time

from flask import Blueprint, request

from . import fixture_app

bp = Blueprint("big_answer", __name__)

# Requests in /slow at once, and the most seen: how many a worker lets run together.
_lock = threading.Lock()
_in_slow = 0
_most_in_slow = 0
# Files /hold-files keeps open, so a worker runs out of descriptors on demand.
_held: list = []


@bp.get("/big")
def big():
    """An answer of `mb` megabytes (8 by default), built in memory as an app's large JSON would be."""
    size = int(float(request.args.get("mb", "8")) * 2**20)
    return b"x" * size, 200, {"Content-Type": "application/octet-stream"}


@bp.route("/slow", methods=["GET", "POST"])
def slow():
    """Answers after `seconds` (2 by default), with the most /slow requests this worker ran at once."""
    global _in_slow, _most_in_slow
    with _lock:
        _in_slow += 1
        _most_in_slow = max(_most_in_slow, _in_slow)
    try:
        time.sleep(float(request.args.get("seconds", "2")))
    finally:
        with _lock:
            _in_slow -= 1
    return {"most_at_once": _most_in_slow}


@bp.post("/hold-files")
def hold_files():
    """Open `count` more files and keep them open; when the descriptors run out, give `spare` back."""
    count = int(request.args.get("count", "100"))
    try:
        for _ in range(count):
            _held.append(open("/dev/null", "rb"))  # noqa: SIM115 - held open on purpose
    except OSError as error:
        for _ in range(int(request.args.get("spare", "0"))):
            _held.pop().close()
        return {"held": len(_held), "error": str(error)}
    return {"held": len(_held)}


@bp.post("/release-files")
def release_files():
    while _held:
        _held.pop().close()
    return {"held": 0}


def create_app(test_config: dict | None = None):
    app = fixture_app.create_app(test_config)
    app.register_blueprint(bp)
    return app
