"""Remove the files of options not taken, then say what to do next. Needs no network."""

import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

ANSWERS_JSON = r"""{{ cookiecutter | tojson }}"""

# The Dockerfile lives in docker/, not at the root, where Railway would build it instead of Railpack.
DOCKER_FILES = ("docker/Dockerfile", ".dockerignore")


def remove_docker_files(root: Path) -> None:
    for name in DOCKER_FILES:
        (root / name).unlink(missing_ok=True)
    docker = root / "docker"
    if docker.is_dir() and not any(docker.iterdir()):
        docker.rmdir()


# The example resource and Alembic's files, kept only in projects generated with Postgres.
DATABASE_FILES = ("alembic.ini", "{{ cookiecutter.package }}/items.py", "tests/test_items.py")


def remove_database_files(root: Path) -> None:
    for name in DATABASE_FILES:
        (root / name).unlink(missing_ok=True)
    shutil.rmtree(root / "migrations", ignore_errors=True)


def remove_caches(root: Path) -> None:
    """Caches a working copy of the template may hold (railkit/ is copied as it is on disk)."""
    for pattern in ("__pycache__", ".ruff_cache", ".pytest_cache"):
        for cache in root.rglob(pattern):
            shutil.rmtree(cache, ignore_errors=True)


# Pythons whose locks need a newer glibc than the others' 2.28 (tests/locks.py's PYTHON_GLIBC): orjson's wheels.
NEWER_GLIBC = {"3.15": "2.39"}
# Where cruft renders a project only to compare it (update, diff): a folder tempfile made for it.
TEMPORARY_FOLDER = re.compile(r"tmp[a-z0-9_]{8}")


def rendered_for_comparison(answers: dict, root: Path) -> bool:
    """Whether cruft renders this project into a temporary folder to compute an update or a diff: no one reads it."""
    folder = root.resolve().parent
    temporary = Path(tempfile.gettempdir()).resolve()
    return "_commit" in answers and folder.parent == temporary and bool(TEMPORARY_FOLDER.fullmatch(folder.name))


def python_help(python: str) -> str:
    """What to run when the pinned Python is not installed: uv fetches it, or pyenv, or the system's package."""
    text = f"""
No python{python}? `uv venv --seed --python {python} .venv` downloads it (then go on from `. .venv/bin/activate`),
or `pyenv install {python}` (until then pyenv's shims refuse every python inside the folder). README.md: "Python"."""
    if python in NEWER_GLIBC:
        text += f"""
Python {python} needs glibc {NEWER_GLIBC[python]} or newer (Debian 13, Ubuntu 24.04) for orjson's wheels: on an older
system pip builds orjson from source, which needs Rust."""
    return text


def next_steps(answers: dict) -> str:
    project, package, python = answers["project"], answers["package"], answers["python_version"]
    database = ""
    if answers["database"] == "postgres":
        database = f"""
  export DATABASE_URL=postgresql://localhost/{package}   # a Postgres of yours (the tests start their own)
  python -m railkit.db migrate             # create the tables, as each deploy does"""
    return f"""
Created {project}/ for Railway's {answers["railway_plan"]} plan ({answers["worker_class"]} workers).
Your code is {package}/ (views.py: example routes); railkit/ is the platform, from the template.

Run it here, on Python {python} (.python-version: what Railway runs):
  cd {project}
  python{python} -m venv .venv && . .venv/bin/activate
  pip install --require-hashes -r requirements-dev.txt   # the lock: exact versions, hash-checked{database}
  python -m railkit.cluster serve          # http://127.0.0.1:8000/health
  python -m railkit.cluster status         # in another shell: one row per worker
  pytest
{python_help(python)}

Deploy it (Railway CLI):
  railway login && railway link                   # or `railway init` for a new project
  railway config plan && railway config apply     # applies .railway/railway.ts
  railway up
"""


def main(root: Path | None = None) -> int:
    root = root or Path.cwd()
    answers = json.loads(ANSWERS_JSON)
    if not answers["use_docker"]:
        remove_docker_files(root)
    if answers["database"] != "postgres":
        remove_database_files(root)
    remove_caches(root)
    if not rendered_for_comparison(answers, root):
        print(next_steps(answers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
