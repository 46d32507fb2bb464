"""The platform's own tests, on an app of their own (fixture_app.py), never the owner's routes.

They run from a rendered project's root, which holds the platform as the project receives it
(the template's tests/support.py: run_platform_tests).

Fixtures: `app` -> `client` for the fast tests, `serve` for real gunicorn clusters,
`server` for one cluster a whole module shares.

In CI a skipped test fails (ci_skips.py, loaded by the runner). A test of
one worker class's behaviour is marked `worker_class(...)` and is deselected,
not skipped, in projects of another class.
"""

from pathlib import Path

import pytest

if not Path("railkit.json").exists():
    pytest.exit("run the platform's suite from a rendered project's root (tests/support.py: run_platform_tests)", 4)

from railkit import project

from .fixture_app import create_app
from .servers import FIXTURE_APP, Server

# Modules whose behaviour does not depend on the worker class: the template runs them in its
# default-class project only (`-m "not same_for_every_worker_class"` elsewhere).
SAME_FOR_EVERY_WORKER_CLASS = {
    "test_app",
    "test_gunicorn_conf",
    "test_import_graph",
    "test_metrics",
    "test_owner_api",
    "test_owner_hooks",
    "test_ratelimit",
    "test_sentry",
    "test_settings",
    "test_sizing",
}

# The database's tests need its packages and a Postgres server: only projects generated with Postgres run them.
if not project.HAS_DATABASE:
    collect_ignore_glob = ["test_database*.py", "fixture_db_app.py"]


def pytest_configure(config):
    config.addinivalue_line("markers", "worker_class(*names): a behaviour of these worker classes only")
    config.addinivalue_line("markers", "same_for_every_worker_class: run in one worker class's project only")
    config.addinivalue_line("markers", "cluster: starts real gunicorn processes (slower)")
    config.addinivalue_line("markers", "use_tracing(answer): in projects generated with this use_tracing only")


def pytest_collection_modifyitems(config, items):
    """Leave out the tests of another worker class's behaviour, or another use_tracing: this project has one of each."""
    kept, other = [], []
    for item in items:
        if item.module.__name__.rpartition(".")[2] in SAME_FOR_EVERY_WORKER_CLASS:
            item.add_marker("same_for_every_worker_class")
        marker = item.get_closest_marker("worker_class")
        tracing = item.get_closest_marker("use_tracing")
        another_class = marker and project.WORKER_CLASS not in marker.args
        another_tracing = tracing and tracing.args[0] != ("yes" if project.HAS_TRACING else "no")
        (other if another_class or another_tracing else kept).append(item)
    if other:
        config.hook.pytest_deselected(items=other)
        items[:] = kept


@pytest.fixture
def app(monkeypatch):
    """An app built from a clean environment, in testing mode."""
    for name in ("REDIS_URL", "RATE_LIMIT", "ENABLE_CLUSTERING", "WEB_CONCURRENCY", "RAILWAY_PLAN"):
        monkeypatch.delenv(name, raising=False)
    return create_app({"TESTING": True})


@pytest.fixture
def client(app):
    """A test client for the app."""
    return app.test_client()


@pytest.fixture
def serve():
    """Start real gunicorn servers from the project root; all are stopped afterwards."""
    started = []

    def start(env=None, app=FIXTURE_APP, command=None, wait=True, port=None):
        server = Server(env or {}, app=app, command=command, port=port)
        started.append(server)
        if wait:
            server.wait_healthy()
        return server

    yield start
    for server in started:
        server.kill()


@pytest.fixture(scope="module")
def server():
    """One small cluster for the whole module, on the free plan's 1 MB body limit, logging every request.

    Not rate limited: its modules send more than the free plan's 60 a minute (test_ratelimit.py tests the limit).
    """
    running = Server({"WEB_CONCURRENCY": "2", "RAILWAY_PLAN": "free", "ACCESS_LOG": "all", "RATE_LIMIT": "off"})
    running.wait_healthy()
    yield running
    running.kill()
