"""What this project was generated with: its names, plan, worker class, server and the plans table.

cookiecutter renders those answers, as data, into railkit.json at the project's
root (beside this package); the platform's code is the same in every project.
RAILKIT_PROJECT_FILE names another file (the platform's own tests use it).
"""

import json
import os
from pathlib import Path

FILE_NAME = "railkit.json"


def _load() -> dict:
    path = os.environ.get("RAILKIT_PROJECT_FILE") or Path(os.path.abspath(__file__)).parent.parent / FILE_NAME
    return json.loads(Path(path).read_text())


_ANSWERS = _load()

# The project's folder and Railway service name, e.g. "my-service".
NAME: str = _ANSWERS["project"]
# A name fit for metric names and loggers, e.g. "my_service".
METRICS_PREFIX: str = _ANSWERS["package"]
# The plan and worker class chosen at generation; RAILWAY_PLAN and gunicorn's -k override them.
DEFAULT_PLAN: str = _ANSWERS["railway_plan"]
WORKER_CLASS: str = _ANSWERS["worker_class"]
# The HTTP server `python -m railkit.cluster serve` starts: "gunicorn", or "granian" (railkit.granian).
SERVER: str = _ANSWERS.get("server", "gunicorn")
# Whether Railway's Redis was added for limits shared by every worker and replica.
HAS_REDIS: bool = bool(_ANSWERS["use_redis"])
# Whether the project was generated with Postgres (railkit.db, its migrations and tests).
HAS_DATABASE: bool = _ANSWERS.get("database", "none") == "postgres"
# Whether the project was generated with OpenTelemetry's packages (use_tracing: railkit.tracing).
HAS_TRACING: bool = _ANSWERS.get("use_tracing") is True
# Railway's plans as data, keyed by name (cookiecutter.json's _plans).
PLANS_TABLE: dict = _ANSWERS["plans"]
