"""Liveness and readiness, in the shape of draft-inadarei-api-health-check.

/health answers from facts this process already holds, so it stays fast
under load and never fails because something else is down. /health/ready
also asks the app's dependencies; Railway's deploy healthcheck uses it, so a
new deploy only goes live once it can reach them.
"""

import os
import time

import psutil
from flask import Blueprint, Response, current_app, json

from .. import project
from ..seam import current_board, stopping
from .problems import problem_response
from .ratelimit import storage_answers

bp = Blueprint("health", __name__, url_prefix="/health")

MEDIA_TYPE = "application/health+json"
# Memory is read from /proc at most this often.
MEMORY_CACHE_SECONDS = 1.0
# This process's facts. The app is usually loaded in gunicorn's master and
# inherited by forked workers, so each worker starts them afresh.
_process = {}


def _start_facts() -> None:
    _process.update(started=time.time(), memory_at=0.0, rss_mib=0.0, uss_mib=0.0)


_start_facts()
os.register_at_fork(after_in_child=_start_facts)


def _memory_check() -> dict:
    """RSS (what the container's limit counts) and USS (what WORKER_MAX_MEMORY_MB limits), in MiB."""
    now = time.monotonic()
    if now - _process["memory_at"] > MEMORY_CACHE_SECONDS:
        memory = psutil.Process().memory_full_info()
        _process.update(memory_at=now, rss_mib=memory.rss / 2**20, uss_mib=memory.uss / 2**20)
    rss, uss = round(_process["rss_mib"], 1), round(_process["uss_mib"], 1)
    return _observed(rss, "MiB", pid=os.getpid(), observedKind="RSS", rss_mib=rss, uss_mib=uss)


def _observed(value: float, unit: str, **extra) -> dict:
    return {"componentType": "system", "observedValue": value, "observedUnit": unit, "status": "pass", **extra}


def _cluster_check() -> dict:
    scoreboard = current_board()
    if scoreboard is None:
        return {"componentType": "system", "status": "pass", "observedValue": 1, "configured": 1}
    configured = scoreboard.master()[1]
    live = len(scoreboard.workers())
    return {
        "componentType": "system",
        "status": "pass" if live >= configured else "warn",
        "observedValue": live,
        "configured": configured,
    }


def _health_response(status: str, checks: dict) -> Response:
    body = {
        "status": status,
        "version": os.environ.get("RAILWAY_GIT_COMMIT_SHA", "dev"),
        "releaseId": os.environ.get("RAILWAY_DEPLOYMENT_ID", "local"),
        "serviceId": project.NAME,
        "checks": checks,
    }
    return Response(json.dumps(body), status=200, mimetype=MEDIA_TYPE)


@bp.get("")
def live():
    """Liveness: this worker answers, with its own facts and the cluster's worker count."""
    checks = {
        "worker:uptime": [_observed(round(time.time() - _process["started"], 1), "s")],
        "worker:memory": [_memory_check()],
        "cluster:workers": [_cluster_check()],
    }
    return _health_response("pass", checks)


@bp.get("/ready")
def ready():
    """Readiness: fails once the replica is stopping; also reaches Redis when the rate limit is shared through it."""
    if stopping():
        return problem_response(503, "Stopping: this replica takes no new traffic (SHUTDOWN_DELAY)")
    checks = {}
    settings = current_app.config["SETTINGS"]
    if settings.redis_url:
        started = time.perf_counter()
        reachable = storage_answers(current_app)
        elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
        checks["redis:responseTime"] = [
            {
                "componentType": "datastore",
                "observedValue": elapsed_ms,
                "observedUnit": "ms",
                "status": "pass" if reachable else "fail",
            }
        ]
        if not reachable:
            return problem_response(503, "Redis at REDIS_URL does not answer", checks=checks)
    # Checks other modules add (railkit.db's "postgres"): each returns (its entry, why it fails or None).
    for name, check in current_app.extensions.get("railkit.readiness", {}).items():
        entry, failure = check()
        checks[f"{name}:responseTime"] = [entry]
        if failure:
            return problem_response(503, failure, checks=checks)
    return _health_response("pass", checks)
