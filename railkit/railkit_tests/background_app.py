"""An app with work beside its requests, for the background-work tests.

`railkit_tests.background_app:app` registers a task with railkit.in_every_worker that marks its
worker's pid in BACKGROUND_DIR while it runs and when it stops. `railkit_tests.background_app:threaded`
starts a thread of its own while it loads instead (THREAD_KIND: daemon, or a non-daemon thread
that holds a lock the requests take), which the cluster refuses.
"""

import os
import threading
from pathlib import Path

import railkit

from .fixture_app import create_app

FOLDER = Path(os.environ.get("BACKGROUND_DIR", "."))
LOCK = threading.Lock()


@railkit.in_every_worker
def mark_while_running(stop: threading.Event) -> None:
    (FOLDER / f"{os.getpid()}.running").touch()
    while not stop.wait(0.05):
        pass
    (FOLDER / f"{os.getpid()}.stopped").touch()


def _hold_the_lock_forever() -> None:
    with LOCK:
        threading.Event().wait()


def _threaded_app():
    app = create_app()
    daemon = os.environ.get("THREAD_KIND") == "daemon"
    threading.Thread(target=_hold_the_lock_forever, name="lock-holder", daemon=daemon).start()

    @app.get("/locked")
    def locked():
        with LOCK:
            return {"locked": False}

    return app


app = create_app() if os.environ.get("THREAD_KIND") is None else None
threaded = _threaded_app() if os.environ.get("THREAD_KIND") else None
