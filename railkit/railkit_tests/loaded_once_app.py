"""The project's app, plus one route that tells where it was imported and what each worker imported since.

With preload_app the master imports the app once and every forked worker
shares those pages; an app imported again after fork costs every worker
its own copy.
"""

import json
import os
import sys

from .fixture_app import create_app

project_app = create_app()

IMPORTED_IN = os.getpid()
_modules_at_fork: set[str] = set()
os.register_at_fork(after_in_child=lambda: _modules_at_fork.update(sys.modules))


def app(environ, start_response):
    if environ["PATH_INFO"] != "/loaded-in":
        return project_app(environ, start_response)
    body = {
        "imported_in": IMPORTED_IN,
        "pid": os.getpid(),
        "imported_since_fork": sorted(set(sys.modules) - _modules_at_fork),
    }
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]
