"""Alembic's entry point: `python -m railkit.db migrate` (Railway's pre-deploy command) runs it.

Import every module that defines models here, so autogenerate sees their tables.
"""

from alembic import context

from railkit.db import Model, run_migrations

# isort: split
from {{ cookiecutter.package }} import items  # noqa: F401 (registers its table on Model.metadata)

run_migrations(context, Model.metadata)
