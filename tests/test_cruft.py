"""A project made with cruft takes a later template change with `cruft update`, and keeps its owner's edits."""

import json
import os
import shutil
import subprocess
from pathlib import Path

from .support import ROOT, TOOLS

# What the template's working tree holds that is not the template.
NOT_TEMPLATE = (".git", ".venv", ".cache", "build", "node_modules", "work", "starter", "__pycache__", "*_cache")
OWNER_ROUTE = """

@bp.get("/mine")
def mine():
    return {"mine": True}
"""
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Template Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Template Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
}


def run(*command: str, cwd: Path) -> str:
    done = subprocess.run(
        command, cwd=cwd, env={**os.environ, **GIT_IDENTITY}, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def commit_all(folder: Path, message: str) -> str:
    run("git", "add", "-A", cwd=folder)
    run("git", "commit", "-q", "-m", message, cwd=folder)
    return run("git", "rev-parse", "HEAD", cwd=folder).strip()


def test_cruft_update_brings_template_changes_and_keeps_owner_edits(tmp_path):
    template = tmp_path / "template"
    shutil.copytree(ROOT, template, symlinks=True, ignore=shutil.ignore_patterns(*NOT_TEMPLATE))
    run("git", "init", "-q", "-b", "main", cwd=template)
    commit_all(template, "the template as it is")

    run(str(TOOLS / "cruft"), "create", str(template), "--no-input", "--output-dir", str(tmp_path), cwd=tmp_path)
    project = tmp_path / "my-service"
    run("git", "init", "-q", "-b", "main", cwd=project)
    commit_all(project, "generated")
    # The owner's own edits: a file the template will change too, and their own package.
    gitignore = project / ".gitignore"
    gitignore.write_text("# ours\n.env.local\n" + gitignore.read_text())
    views = project / "my_service" / "views.py"
    views.write_text(views.read_text() + OWNER_ROUTE)
    commit_all(project, "owner's edits")

    # Later, the template improves: a file line, the platform, and a value of the plan table.
    (template / "{{cookiecutter.project}}" / ".gitignore").open("a").write("*.log\n")
    platform_version = template / "railkit" / "railkit" / "__init__.py"
    platform_version.write_text(platform_version.read_text().replace('__version__ = "', '__version__ = "9.9.9+'))
    settings = json.loads((template / "cookiecutter.json").read_text())
    settings["_plans"]["hobby"]["rate_limit"] = "301/minute"
    (template / "cookiecutter.json").write_text(json.dumps(settings, indent=2))
    newest = commit_all(template, "the template improves")

    run(str(TOOLS / "cruft"), "update", "-y", cwd=project)

    lines = gitignore.read_text().splitlines()
    assert lines[:2] == ["# ours", ".env.local"], "the owner's edit was lost"
    assert lines[-1] == "*.log", "the template's change did not arrive"
    assert '"301/minute"' in (project / "railkit.json").read_text(), "the plan table did not arrive"
    assert '__version__ = "9.9.9+' in (project / "railkit" / "__init__.py").read_text(), "the platform did not arrive"
    assert views.read_text().endswith(OWNER_ROUTE), "the owner's package was touched"
    assert json.loads((project / ".cruft.json").read_text())["commit"] == newest
    assert not list(project.rglob("*.rej")), "cruft could not merge"
    run(str(TOOLS / "cruft"), "check", cwd=project)
