"""A project made with cruft takes a later template change with `cruft update`, and keeps its owner's edits."""

import json
import os
import shutil
import subprocess
from pathlib import Path

from .support import ROOT, TOOLS

# What the template's working tree holds that is not the template.
NOT_TEMPLATE = (".git", ".venv", ".cache", "build", "node_modules", "work", "starter", "__pycache__", "*_cache")
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
    shutil.copytree(ROOT, template, ignore=shutil.ignore_patterns(*NOT_TEMPLATE))
    run("git", "init", "-q", "-b", "main", cwd=template)
    commit_all(template, "the template as it is")

    run(str(TOOLS / "cruft"), "create", str(template), "--no-input", "--output-dir", str(tmp_path), cwd=tmp_path)
    project = tmp_path / "my-service"
    run("git", "init", "-q", "-b", "main", cwd=project)
    commit_all(project, "generated")
    # The owner's own edit, in a file the template will change too.
    gitignore = project / ".gitignore"
    gitignore.write_text("# ours\n.env.local\n" + gitignore.read_text())
    commit_all(project, "owner's edit")

    # Later, the template improves: a file line, and a value of the plan table.
    (template / "{{cookiecutter.project}}" / ".gitignore").open("a").write("*.log\n")
    settings = json.loads((template / "cookiecutter.json").read_text())
    settings["_plans"]["hobby"]["rate_limit"] = "301/minute"
    (template / "cookiecutter.json").write_text(json.dumps(settings, indent=2))
    newest = commit_all(template, "the template improves")

    run(str(TOOLS / "cruft"), "update", "-y", cwd=project)

    lines = gitignore.read_text().splitlines()
    assert lines[:2] == ["# ours", ".env.local"], "the owner's edit was lost"
    assert lines[-1] == "*.log", "the template's change did not arrive"
    assert '"301/minute"' in (project / "my_service" / "plans.json").read_text(), "the plan table did not arrive"
    assert json.loads((project / ".cruft.json").read_text())["commit"] == newest
    assert not list(project.rglob("*.rej")), "cruft could not merge"
    run(str(TOOLS / "cruft"), "check", cwd=project)
