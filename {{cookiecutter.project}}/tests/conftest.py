"""Fixtures: `app` -> `client` for the fast tests, `serve` for real gunicorn clusters.

In CI (the CI variable is set, as GitHub Actions does) a skipped test fails:
a test that cannot run there proves nothing, so CI must install what it needs.
"""

import os

import pytest

from {{ cookiecutter.package }} import create_app

from .servers import Server


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

    def start(env=None, app="main:app", command=None, wait=True, port=None):
        server = Server(env or {}, app=app, command=command, port=port)
        started.append(server)
        if wait:
            server.wait_healthy()
        return server

    yield start
    for server in started:
        server.kill()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Turn a skip into a failure in CI, keeping its reason (which says what to install)."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("CI") and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, and CI must run every test: {reason}"
