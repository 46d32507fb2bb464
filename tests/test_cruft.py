"""A project made with cruft takes a later template change with `cruft update`, and keeps its owner's edits."""

import json
import os
import re
import shlex
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


# The first line of the post-generation hook's next steps.
NEXT_STEPS = "Run it here, on Python"


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


def template_repository(tmp_path: Path) -> tuple[Path, str]:
    """A git clone of the template as it is on disk, as cruft needs one; returns it and its commit."""
    template = tmp_path / "template"
    shutil.copytree(ROOT, template, symlinks=True, ignore=shutil.ignore_patterns(*NOT_TEMPLATE))
    run("git", "init", "-q", "-b", "main", cwd=template)
    return template, commit_all(template, "the template as it is")


def test_cruft_update_brings_template_changes_and_keeps_owner_edits(tmp_path):
    template, _ = template_repository(tmp_path)

    cruft = str(TOOLS / "cruft")
    created = run(cruft, "create", str(template), "--no-input", "--output-dir", str(tmp_path), cwd=tmp_path)
    assert created.count(NEXT_STEPS) == 1, created
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

    # What the READMEs say: diff shows the owner's edits, not the template's changes.
    diff = run(cruft, "diff", cwd=project)
    assert ".env.local" in diff and "/mine" in diff and "*.log" not in diff, diff
    # The READMEs' preview: update the working tree, read git's diff, and drop it as they say.
    updated = run(cruft, "update", "-y", cwd=project)
    assert NEXT_STEPS not in updated, "the hook's next steps, printed for cruft's own renders"
    preview = run("git", "diff", "HEAD", cwd=project)
    assert "+*.log" in preview and "301/minute" in preview and "/mine" not in preview, preview
    run("git", "reset", "-q", "--hard", cwd=project)
    run("git", "clean", "-q", "-fd", cwd=project)
    assert json.loads((project / ".cruft.json").read_text())["commit"] != newest, "the update was not dropped"

    run(cruft, "update", "-y", cwd=project)

    lines = gitignore.read_text().splitlines()
    assert lines[:2] == ["# ours", ".env.local"], "the owner's edit was lost"
    assert lines[-1] == "*.log", "the template's change did not arrive"
    assert '"301/minute"' in (project / "railkit.json").read_text(), "the plan table did not arrive"
    assert '__version__ = "9.9.9+' in (project / "railkit" / "__init__.py").read_text(), "the platform did not arrive"
    assert views.read_text().endswith(OWNER_ROUTE), "the owner's package was touched"
    assert json.loads((project / ".cruft.json").read_text())["commit"] == newest
    assert not list(project.rglob("*.rej")), "cruft could not merge"
    run(cruft, "check", cwd=project)

    # The project README's way to another Python: every pin moves at once.
    commit_all(project, "the template's update")
    run(cruft, "update", "-y", "--variables-to-update", '{"python_version": "3.15"}', cwd=project)
    assert (project / ".python-version").read_text().strip() == "3.15"
    pyproject = (project / "pyproject.toml").read_text()
    assert 'requires-python = ">=3.15"' in pyproject and 'target-version = "py315"' in pyproject
    assert "FROM python:3.15-slim-trixie" in (project / "docker" / "Dockerfile").read_text()


def test_a_cookiecutter_project_links_with_the_command_its_readme_gives(tmp_path):
    """The README's `cruft link` records the project's own answers: the project then matches the template exactly."""
    template, commit = template_repository(tmp_path)
    answers = ["database=postgres", "railway_plan=pro", "worker_class=gevent", "use_docker=no", "project=shop-api"]
    run(str(TOOLS / "cookiecutter"), str(template), "--no-input", "-o", str(tmp_path), *answers, cwd=tmp_path)
    project = tmp_path / "shop-api"
    run("git", "init", "-q", "-b", "main", cwd=project)
    commit_all(project, "generated")
    [link] = re.findall(r"^cruft link .*$", (project / "README.md").read_text(), re.MULTILINE)
    command = shlex.split(link.replace("path/or/git-url/of/the/template", str(template)).replace("COMMIT", commit))

    run(str(TOOLS / "cruft"), *command[1:], cwd=project)

    context = json.loads((project / ".cruft.json").read_text())["context"]["cookiecutter"]
    assert context["database"] == "postgres" and context["use_docker"] is False, context
    # Rendered again from the recorded answers and commit, the template gives this very project.
    run(str(TOOLS / "cruft"), "diff", "--exit-code", cwd=project)
