"""What a generated project ships for its own upkeep: CI that installs from the lock, audits it and
lets no test skip, Dependabot, and install commands that check hashes."""

import os
import re
import subprocess

import pytest
import yaml

from .support import TEMPLATE, project_venv

INSTALL_FROM_LOCK = re.compile(r"pip install --require-hashes -r requirements(-dev)?\.txt")


def test_ci_workflow_installs_the_lock_audits_it_and_runs_every_test(cookies):
    project = cookies.bake().project_path
    workflow = yaml.safe_load((project / ".github" / "workflows" / "ci.yml").read_text())
    steps = workflow["jobs"]["test"]["steps"]
    commands = "\n".join(step.get("run", "") for step in steps)
    assert INSTALL_FROM_LOCK.search(commands)
    assert all(package in commands for package in ("redis-server", "nginx", "prometheus"))
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


def test_a_skipped_test_fails_in_ci_only(cookies):
    """The project's pytest turns a skip into a failure when CI is set, as GitHub Actions sets it."""
    project = cookies.bake().project_path
    (project / "tests" / "test_needs_something.py").write_text(
        'import pytest\n\n\ndef test_needs_a_server():\n    pytest.skip("needs a server")\n'
    )
    venv = project_venv(project)
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    command = [
        str(venv / "bin" / "python"),
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/test_needs_something.py",
    ]
    locally = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)
    assert locally.returncode == 0 and "1 skipped" in locally.stdout, locally.stdout
    in_ci = subprocess.run(command, cwd=project, env={**env, "CI": "true"}, capture_output=True, text=True)
    assert in_ci.returncode != 0 and "skipped in CI" in in_ci.stdout, in_ci.stdout


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
