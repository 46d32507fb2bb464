"""An app using the owner's extension points: its own setting and a readiness check of its own.

gunicorn serves it as `railkit_tests.owner_api_app:create_app()`. FIXTURE_PAGE_SIZE is its own
variable (1 to 500); the check "dependency" waits DEPENDENCY_SECONDS (0 unless set) and then
passes, unless DEPENDENCY_DOWN is set.
"""

import os
import threading

import railkit

from .fixture_app import create_app as create_fixture_app


def dependency_answers() -> bool:
    threading.Event().wait(float(os.environ.get("DEPENDENCY_SECONDS", "0")))
    if os.environ.get("DEPENDENCY_DOWN"):
        raise ConnectionError("dependency.internal:9000 refused the connection")
    return True


def create_app(test_config: dict | None = None):
    app = create_fixture_app(test_config)
    app.config["PAGE_SIZE"] = railkit.setting("FIXTURE_PAGE_SIZE", int, default=50, minimum=1, maximum=500)
    railkit.add_readiness_check(app, "dependency", dependency_answers, timeout=1.0)

    @app.get("/page-size")
    def page_size():
        return {"page_size": app.config["PAGE_SIZE"]}

    return app
