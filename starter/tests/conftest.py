"""Fixtures for your tests: `app` -> `client`, as in Flask's tutorial."""

import pytest

from my_service import create_app


@pytest.fixture
def app(monkeypatch):
    """Your app, built from a clean environment, in testing mode."""
    for name in ("REDIS_URL", "RATE_LIMIT", "ENABLE_CLUSTERING", "WEB_CONCURRENCY", "RAILWAY_PLAN"):
        monkeypatch.delenv(name, raising=False)
    return create_app({"TESTING": True})


@pytest.fixture
def client(app):
    """A test client for the app."""
    return app.test_client()
