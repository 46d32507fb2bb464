"""The locks: hashed requirements compiled by uv from each project variant's inputs, and the tooling's.

`make lock` (python -m tests.locks) refreshes them all to the newest versions the inputs allow;
test_locks.py compiles them again without upgrading and expects the very same bytes.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from cookiecutter.main import cookiecutter

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ROOT / "templates" / "locks"
# One lock per variant the template renders (cookiecutter.json's __lock), with the answers that render
# it: gevent adds its own dependencies, and so do granian, the database and tracing.
VARIANTS = {
    "default": {"worker_class": "gthread"},
    "gevent": {"worker_class": "gevent"},
    "default-postgres": {"worker_class": "gthread", "database": "postgres"},
    "gevent-postgres": {"worker_class": "gevent", "database": "postgres"},
    "default-tracing": {"worker_class": "gthread", "use_tracing": "yes"},
    "gevent-tracing": {"worker_class": "gevent", "use_tracing": "yes"},
    "default-postgres-tracing": {"worker_class": "gthread", "database": "postgres", "use_tracing": "yes"},
    "gevent-postgres-tracing": {"worker_class": "gevent", "database": "postgres", "use_tracing": "yes"},
    "default-granian": {"worker_class": "gthread", "server": "granian"},
    "default-granian-postgres": {"worker_class": "gthread", "server": "granian", "database": "postgres"},
    "default-granian-tracing": {"worker_class": "gthread", "server": "granian", "use_tracing": "yes"},
    "default-granian-postgres-tracing": {
        "worker_class": "gthread",
        "server": "granian",
        "database": "postgres",
        "use_tracing": "yes",
    },
}
OFFERED_PYTHONS = json.loads((ROOT / "cookiecutter.json").read_text())["python_version"]
# The oldest glibc (manylinux_2_X) whose wheels install every lock on a Python, and the locked package that
# raises it for one Python; the README's "Python versions" table states the same. Below it, pip builds from source.
GLIBC_FLOOR = "2.28"  # gevent's wheels, and psycopg-binary's for aarch64
PYTHON_GLIBC = {"3.15": ("2.39", "orjson")}  # orjson 3.13.0's cp315 wheels are manylinux_2_39 only


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


# The oldest Python offered; a universal resolution from it holds on every newer one and every platform.
OLDEST_PYTHON = min(OFFERED_PYTHONS, key=version_key)
UV = str(Path(sys.executable).parent / "uv")
COMPILE_OPTIONS = ["--universal", "--generate-hashes", "--python-version", OLDEST_PYTHON]
# Each lock from its input, as run in the folder that holds both; the lock's header shows the command.
PROJECT_LOCKS = {
    "requirements.txt": ["requirements.in", "-o", "requirements.txt"],
    "requirements-dev.txt": ["requirements-dev.in", "-c", "requirements.txt", "-o", "requirements-dev.txt"],
}
TOOLING_LOCK = ["requirements.in", "-o", "requirements.txt"]


def glibc_floor(python: str) -> str:
    """The oldest glibc on which every lock installs from wheels alone on `python`."""
    return PYTHON_GLIBC.get(python, (GLIBC_FLOOR, None))[0]


def variant_for(worker_class: str, database: str = "none", use_tracing: str = "no", server: str = "gunicorn") -> str:
    """The lock a project with these answers gets (as cookiecutter.json's __lock computes it)."""
    return (
        ("gevent" if worker_class == "gevent" else "default")
        + ("-granian" if server == "granian" else "")
        + ("-postgres" if database == "postgres" else "")
        + ("-tracing" if use_tracing == "yes" else "")
    )


def compile_lock(folder: Path, arguments: list[str], upgrade: bool) -> None:
    """Compile one lock in `folder`; without `upgrade` the lock already there pins every version it can."""
    # The header names the command an owner reruns, the same whether or not this run upgrades.
    header = " ".join(["uv pip compile", *COMPILE_OPTIONS, *arguments])
    command = [UV, "pip", "compile", "--quiet", *COMPILE_OPTIONS, *(["--upgrade"] if upgrade else []), *arguments]
    env = {**os.environ, "UV_CUSTOM_COMPILE_COMMAND": header}
    compiled = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    if compiled.returncode != 0:
        raise RuntimeError(f"uv could not compile {arguments[0]} in {folder}:\n{compiled.stderr}")


def render(variant: str, output: Path) -> Path:
    """The default project with `variant`'s answers: its inputs, and the lock the template gives it."""
    return Path(cookiecutter(str(ROOT), no_input=True, output_dir=str(output), extra_context=VARIANTS[variant]))


def compiled_project_locks(variant: str, output: Path, upgrade: bool) -> Path:
    """Render a project of `variant` and compile its locks in place; returns the project."""
    project = render(variant, output)
    for arguments in PROJECT_LOCKS.values():
        compile_lock(project, arguments, upgrade)
    return project


def compiled_tooling_lock(output: Path, upgrade: bool) -> Path:
    for name in ("requirements.in", "requirements.txt"):
        shutil.copy(ROOT / "tests" / name, output / name)
    compile_lock(output, TOOLING_LOCK, upgrade)
    return output / "requirements.txt"


def refresh() -> None:
    """Every lock, upgraded to the newest versions its inputs allow."""
    with tempfile.TemporaryDirectory() as work:
        for variant in VARIANTS:
            project = compiled_project_locks(variant, Path(work) / variant, upgrade=True)
            for name in PROJECT_LOCKS:
                shutil.copy(project / name, LOCKS / variant / name)
                print(f"locked {LOCKS.relative_to(ROOT) / variant / name}")
        tooling = Path(work) / "tooling"
        tooling.mkdir()
        shutil.copy(compiled_tooling_lock(tooling, upgrade=True), ROOT / "tests" / "requirements.txt")
        print("locked tests/requirements.txt")


if __name__ == "__main__":
    refresh()
