"""Helpers shared by the template's tests and bench: the plan table, interpreters, cached venvs."""

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from . import pythons

ROOT = Path(__file__).resolve().parent.parent
CACHE = (ROOT / ".cache").resolve()  # a worktree may link it to a shared one
TEMPLATE = json.loads((ROOT / "cookiecutter.json").read_text())
PLANS = TEMPLATE["_plans"]
PLAN_NAMES = ("free", "trial", "hobby", "pro", "enterprise")
TOOLS = Path(sys.executable).parent
# pytest's marks of a skipped test (a test's own name may hold the word: test_skipped_access_lines_...).
SKIPS = re.compile(r"\bSKIPPED\b|\d+ skipped")


def missing(message: str) -> None:
    """Skip a test that needs what this machine lacks (saying how to get it); in CI, fail it."""
    if os.environ.get("CI"):
        pytest.fail(f"CI must run this test: {message}")
    pytest.skip(message)


def python_for(version: str) -> str:
    """An interpreter for `version` (pythons.find: pyenv's, PATH's, Debian forky's); else skip saying how."""
    try:
        return pythons.find(version)
    except pythons.Unavailable as error:
        missing(f"needs Python {version}: {error}; or install it (e.g. `pyenv install {version}`)")


# `make test-newest` sets this: projects get the newest release of every dependency, unlocked.
NEWEST = os.environ.get("TEMPLATE_DEPENDENCIES") == "newest"


def project_venv(project: Path) -> Path:
    """A venv with the project's locked, hash-checked requirements, for the Python its .python-version names.

    Venvs are cached by interpreter and lock contents, so projects that pin the
    same ones share a venv across tests and runs. With NEWEST, the venv is built
    from the project's unlocked inputs (requirements*.in) with every package
    upgraded, once a day.
    """
    names = ("requirements.in", "requirements-dev.in") if NEWEST else ("requirements.txt", "requirements-dev.txt")
    requirements = "".join((project / name).read_text() for name in names)
    if NEWEST:
        requirements += time.strftime("newest %Y-%m-%d")
        install = ["--upgrade", "-r", "requirements-dev.in"]
    else:
        install = ["--require-hashes", "-r", "requirements-dev.txt"]
    return _cached_venv(project, "py", requirements, install, installer="uv")


def _cached_venv(project: Path, prefix: str, requirements: str, install: list[str], installer="pip") -> Path:
    """A venv for the project's .python-version with `<installer> install <install>`, cached by Python and lock.

    uv installs the same locked, hash-checked wheels as pip, in seconds instead of a minute (a
    clean `make test` makes about ten venvs); pip stays where the test is how pip installs.
    """
    version = (project / ".python-version").read_text().strip()
    key = hashlib.sha256(f"{version}\n{requirements}".encode()).hexdigest()[:12]
    venv = CACHE / "venvs" / f"{prefix}{version}-{key}"
    CACHE.mkdir(exist_ok=True)
    with open(CACHE / "venvs.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / "complete").exists():
            shutil.rmtree(venv, ignore_errors=True)
            if installer == "uv":
                uv = str(TOOLS / "uv")
                interpreter = python_for(version)
                subprocess.run([uv, "venv", "--quiet", "--python", interpreter, str(venv)], check=True)
                # Not compiled here: the first process to import a module compiles it, once (`make test` lets Python
                # write its bytecode), where compiling every module a venv holds cost 5 s of CPU per venv.
                python = str(venv / "bin" / "python")
                command = [uv, "pip", "install", "--quiet", "--python", python]
            else:
                subprocess.run([python_for(version), "-m", "venv", str(venv)], check=True)
                python = str(venv / "bin" / "python")
                command = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
            subprocess.run([*command, *install], check=True, cwd=project)
            (venv / "complete").touch()
    return venv


def run_project_tests(project: Path, *pytest_args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The owner's `pytest`, in the project's venv, from its root (`env`: the whole environment, if given)."""
    venv = project_venv(project)
    return subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", *pytest_args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


# The platform's own suite, a package beside the platform (railkit/railkit_tests), on its fixture apps.
PLATFORM_SUITE = ROOT / "railkit" / "railkit_tests"


def run_platform_tests(project: Path, *pytest_args: str) -> subprocess.CompletedProcess:
    """The platform's suite against a rendered project: its railkit/, railkit.json and gunicorn.conf.py.

    It runs from the project's root, in the project's venv, with the suite's folder on PYTHONPATH so the
    gunicorn processes it starts can import its fixture apps; in CI a skipped test fails (ci_skips).
    """
    venv = project_venv(project)
    env = {**os.environ, "PYTHONPATH": str(PLATFORM_SUITE.parent)}
    # The whole suite, unless the arguments name parts of it.
    named = [arg for arg in pytest_args if arg.startswith(str(PLATFORM_SUITE))]
    command = [str(venv / "bin" / "python"), "-m", "pytest", *([] if named else [str(PLATFORM_SUITE)])]
    options = ["-q", "-rs", "-p", "no:cacheprovider", "--rootdir", str(PLATFORM_SUITE)]
    options += ["-p", "railkit_tests.ci_skips", "-p", "railkit_tests.shards", "-p", "railkit_tests.load_slots"]
    # importlib: pytest puts no folder of the template first on sys.path, so `railkit` is the project's copy.
    options.append("--import-mode=importlib")
    return subprocess.run(
        [*command, *options, *pytest_args], cwd=project, env=env, capture_output=True, text=True, timeout=1800
    )


def production_replicas(plan: dict) -> int:
    replicas = plan["replicas"]["production"]
    return sum(replicas.values()) if isinstance(replicas, dict) else replicas


def railpack_venv(project: Path) -> Path:
    """A venv built the way Railpack builds the project: `pip install -r requirements.txt`, nothing else.

    No --require-hashes flag: pip checks every hash by itself because the lock carries them.
    Cached by interpreter and lock contents, like project_venv.
    """
    return _cached_venv(project, "railpack-py", (project / "requirements.txt").read_text(), ["-r", "requirements.txt"])
