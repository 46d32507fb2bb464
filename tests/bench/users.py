"""Concurrent users (issue 27): thousands of kept-alive clients asking now and then, under a soft limit of 1,024 files.

The clients are the platform tests' own (railkit/railkit_tests/attacks.py, loaded by
path: the bench's venv has no Flask to import railkit with).
"""

import importlib.util
import resource
import time
from contextlib import contextmanager

from ..support import ROOT
from .attacks import Prober, worker_crashes

# The soft open-files limit servers start with here, as many containers give (the hard limit is left as it is).
SOFT_FILES = 1024


def _platform_clients():
    spec = importlib.util.spec_from_file_location(
        "railkit_test_clients", ROOT / "railkit" / "railkit_tests" / "attacks.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextmanager
def soft_files_limit(soft: int):
    """Processes started inside inherit `soft` open files (at most the hard limit); the bench keeps its own."""
    before, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (before, hard))


def raise_own_files_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))


def run(server, users: int, interval: float, seconds: float) -> dict:
    """`users` kept-alive clients against a running server, with /health probed beside them."""
    raise_own_files_limit(users + 1024)
    clients = _platform_clients()
    started = time.monotonic()
    with Prober(server.port) as prober:
        outcome = clients.KeptAliveUsers(server.port, users, interval).run(seconds)
    return {
        "users": users,
        "requests": outcome.sent,
        "first_try": round(outcome.first_try, 5),
        "failures": outcome.failures,
        "closed_with_connection_close": outcome.closed_cleanly,
        "health_answered": prober.availability,
        "worker_crashes": worker_crashes(server),
        "seconds": round(time.monotonic() - started, 1),
    }
