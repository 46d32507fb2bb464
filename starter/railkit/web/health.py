"""Liveness and readiness, in the shape of draft-inadarei-api-health-check.

/health answers from facts this process already holds, so it stays fast
under load and never fails because something else is down. /health/ready
also asks the app's dependencies; Railway's deploy healthcheck uses it, so a
new deploy only goes live once it can reach them.
"""

import logging
import os
import threading
import time
from collections.abc import Callable

import psutil
from flask import Blueprint, Response, current_app, json

from .. import project
from ..seam import current_board, stopping
from .problems import problem_response
from .ratelimit import redis_check

__all__ = ["add_readiness_check"]

log = logging.getLogger(__name__)

bp = Blueprint("health", __name__, url_prefix="/health")

# Readiness checks by name, each returning (its health+json entry, why it fails or None): the owner's
# (add_readiness_check) and the platform's own (railkit.db's "postgres").
READINESS_CHECKS = "railkit.readiness"
# The default deadline of an owner's readiness check (s): Railway's healthcheck retries for minutes.
CHECK_TIMEOUT = 2.0

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
        entry = redis_check(current_app)
        # Why goes to the log only (an error's text names hosts); the answer says which kind of failure.
        output = entry.pop("output", "")
        checks["redis:responseTime"] = [entry]
        if entry["status"] == "fail":
            refused = output.startswith("Redis refuses")
            detail = (
                "Redis at REDIS_URL refuses the rate limit's commands"
                if refused
                else "Redis at REDIS_URL does not answer"
            )
            return problem_response(503, detail, checks=checks)
    for name, check in current_app.extensions.get(READINESS_CHECKS, {}).items():
        entry, failure = check()
        checks[f"{name}:responseTime"] = [entry]
        if failure:
            return problem_response(503, failure, checks=checks)
    return _health_response("pass", checks)


def add_readiness_check(app, name: str, check: Callable[[], object], *, timeout: float = CHECK_TIMEOUT) -> None:
    """Have /health/ready run `check()` under `name`: the replica is ready while every check passes.

    A check passes when it returns anything but False; it fails (503) when it returns False, raises,
    or has not answered within `timeout` seconds. Each process runs one call of a check at a time:
    while a slow call is still running, the check fails without starting another, so a flood of
    /health/ready requests cannot pile up threads behind a dependency that hangs. The check runs
    inside the app's context (current_app works), not a request's.
    """
    if not name or not isinstance(name, str):
        raise ValueError(f"a readiness check needs a name, not {name!r}")
    checks = app.extensions.setdefault(READINESS_CHECKS, {})
    if name in checks:
        raise ValueError(f"a readiness check named {name!r} is already registered")
    if not timeout > 0:
        raise ValueError(f"readiness check {name!r}: timeout must be a positive number of seconds")
    checks[name] = DeadlinedCheck(app, name, check, timeout)


class DeadlinedCheck:
    """One owner's check, run in a thread of its own so it can be given up on at its deadline."""

    def __init__(self, app, name: str, check: Callable[[], object], timeout: float):
        self.app, self.name, self.check, self.timeout = app, name, check, timeout
        self.running: threading.Thread | None = None
        self.starting = threading.Lock()
        # What the last call found, so a failure is logged when it starts or changes, not once per probe.
        self.last_failure: str | None = None

    def __call__(self) -> tuple[dict, str | None]:
        started = time.perf_counter()
        failure = self._failure()
        if failure != self.last_failure and failure is not None:
            # The reason goes to the log only: the answer is public, and an error's text may name hosts.
            log.warning("Not ready: %s", failure, extra={"check": self.name})
        self.last_failure = failure
        entry = {
            "componentType": "component",
            "observedValue": round((time.perf_counter() - started) * 1000, 1),
            "observedUnit": "ms",
            "status": "fail" if failure else "pass",
        }
        return entry, failure and f"Readiness check {self.name} failed"

    def _failure(self) -> str | None:
        """Why the check fails now, or None when it passes."""
        outcome: dict = {}
        with self.starting:
            if self.running is not None and self.running.is_alive():
                return f"readiness check {self.name} is still running from an earlier call"
            running = threading.Thread(target=self._run, args=(outcome,), name=f"readiness:{self.name}", daemon=True)
            self.running = running
            running.start()
        running.join(self.timeout)
        if "passed" not in outcome:
            return f"readiness check {self.name} did not answer within {self.timeout:g}s"
        if not outcome["passed"]:
            return f"readiness check {self.name} failed: {outcome.get('error', 'it returned False')}"
        return None

    def _run(self, outcome: dict) -> None:
        try:
            with self.app.app_context():
                outcome["passed"] = self.check() is not False
        except Exception as error:
            outcome["error"] = f"{type(error).__name__}: {error}".splitlines()[0][:200]
            outcome["passed"] = False
