"""Fixtures for your tests: `app` -> `client`, as in Flask's tutorial."""

import pytest
{%- if cookiecutter.database == "postgres" %}

from railkit.db import upgrade
from railkit.db.testing import create_database, postgres  # noqa: F401 (a fixture)

# isort: split
{%- endif %}

from {{ cookiecutter.package }} import create_app
{%- if cookiecutter.database == "postgres" %}


@pytest.fixture(autouse=True)
def database_url(monkeypatch, postgres):  # noqa: F811
    """Every test gets a database of its own, migrated as a deploy migrates it, on a throwaway Postgres server."""
    url = create_database(postgres, "app")
    monkeypatch.setenv("DATABASE_URL", url)
    upgrade("alembic.ini")
    return url
{%- endif %}


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
