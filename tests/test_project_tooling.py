"""What a generated project ships for its own upkeep: CI that installs from the lock, audits it and
lets no test skip, Dependabot, and install commands that check hashes."""

import os
import re
import subprocess

import pytest
import yaml

from .support import TEMPLATE, project_venv

INSTALL_FROM_LOCK = re.compile(r"pip install --require-hashes -r requirements(-dev)?\.txt")


def test_ci_workflow_installs_the_lock_audits_it_and_runs_the_owners_tests(cookies):
    """The owner's tests need no service: the workflow installs none (the platform's tests run in the template)."""
    project = cookies.bake().project_path
    workflow = yaml.safe_load((project / ".github" / "workflows" / "ci.yml").read_text())
    steps = workflow["jobs"]["test"]["steps"]
    commands = "\n".join(step.get("run", "") for step in steps)
    assert INSTALL_FROM_LOCK.search(commands)
    assert not [package for package in ("apt-get", "redis-server", "nginx", "prometheus") if package in commands]
    assert "git diff --exit-code -- requirements.txt requirements-dev.txt" in commands
    assert re.search(r"^pytest\b", commands, re.MULTILINE)
    audit = workflow["jobs"]["audit"]["steps"][-1]
    assert audit["uses"].startswith("pypa/gh-action-pip-audit@")
    assert audit["with"]["require-hashes"] is True


def test_dependabot_watches_the_locks_and_the_actions(cookies):
    project = cookies.bake().project_path
    config = yaml.safe_load((project / ".github" / "dependabot.yml").read_text())
    assert {update["package-ecosystem"] for update in config["updates"]} == {"pip", "github-actions"}


def test_every_install_command_checks_hashes(cookies):
    project = cookies.bake(extra_context={"use_docker": True}).project_path
    assert INSTALL_FROM_LOCK.search((project / "docker" / "Dockerfile").read_text())
    readme = (project / "README.md").read_text()
    installs = re.findall(r"^pip install .*$", readme, re.MULTILINE)
    assert installs and all(INSTALL_FROM_LOCK.match(line) for line in installs), installs


def test_the_postgres_fixture_skips_locally_and_fails_in_ci_without_postgres(cookies):
    """The owner's database tests never pass in CI by skipping: without a Postgres server, the fixture fails there."""
    project = cookies.bake(extra_context={"database": "postgres"}).project_path
    # As on a machine without Postgres's server: the fixture finds no binaries.
    (project / "tests" / "conftest.py").write_text(
        "import railkit.db.testing\n\nrailkit.db.testing.server_binaries = lambda: None\n"
        + (project / "tests" / "conftest.py").read_text()
    )
    venv = project_venv(project)
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    command = [str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_items.py"]
    locally = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)
    assert locally.returncode == 0 and " skipped" in locally.stdout, locally.stdout
    in_ci = subprocess.run(command, cwd=project, env={**env, "CI": "true"}, capture_output=True, text=True)
    assert in_ci.returncode != 0 and "CI must run this test" in in_ci.stdout, in_ci.stdout


# A model whose annotation names a class defined further down: the quotes are what older Pythons need.
FORWARD_REFERENCE_MODEL = """\"\"\"Notebooks and their notes.\"\"\"

from sqlalchemy import ForeignKey
from sqlalchemy.orm import Mapped, mapped_column, relationship

from railkit.db import Model


class Notebook(Model):
    __tablename__ = "notebooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    notes: Mapped[list["Note"]] = relationship(back_populates="notebook")


class Note(Model):
    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    notebook_id: Mapped[int] = mapped_column(ForeignKey("notebooks.id"))
    notebook: Mapped[Notebook] = relationship(back_populates="notes")
"""
# Import the models and resolve their relationships, as the first query would.
IMPORT_MODELS = (
    "from sqlalchemy.orm import configure_mappers; import my_service.notes as notes; configure_mappers(); "
    "print(notes.Notebook.notes.property.mapper.class_.__name__)"
)


@pytest.mark.parametrize("python", TEMPLATE["python_version"])
def test_a_forward_reference_survives_ruff_fix_on_the_projects_python(cookies, python):
    """The project's ruff rewrites only what its pinned Python runs: the fixed model imports there."""
    project = cookies.bake(extra_context={"python_version": python, "database": "postgres"}).project_path
    model = project / "my_service" / "notes.py"
    model.write_text(FORWARD_REFERENCE_MODEL)
    venv = project_venv(project)
    fixed = subprocess.run(
        [str(venv / "bin" / "ruff"), "check", "--fix", "--no-cache", str(model)],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    imported = subprocess.run(
        [str(venv / "bin" / "python"), "-c", IMPORT_MODELS], cwd=project, capture_output=True, text=True
    )
    assert imported.returncode == 0 and imported.stdout.strip() == "Note", imported.stderr[-3000:]
