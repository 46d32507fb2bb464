"""The locks: fresh against their inputs, installable everywhere the template offers, used everywhere."""

import json
import re
import subprocess

import pytest

from . import locks
from .support import ROOT, TEMPLATE, TOOLS

PLATFORMS = ("x86_64-manylinux_2_28", "aarch64-manylinux_2_28")
LOCK_FILES = sorted(locks.LOCKS.glob("*/requirements*.txt"))
# What Railway installs: the dev locks add only tools that publish wheels for any Python.
RUNTIME_LOCKS = sorted(locks.LOCKS.glob("*/requirements.txt"))


@pytest.mark.parametrize("variant", locks.VARIANTS)
def test_project_locks_are_fresh(variant, tmp_path):
    """Compiled again from the rendered inputs, keeping the versions it pins, each lock is the same bytes."""
    project = locks.render(variant, tmp_path)
    shipped = {name: (project / name).read_text() for name in locks.PROJECT_LOCKS}
    assert all("--hash=sha256:" in text for text in shipped.values()), "a lock without hashes"
    for arguments in locks.PROJECT_LOCKS.values():
        locks.compile_lock(project, arguments, upgrade=False)
    for name, text in shipped.items():
        assert (project / name).read_text() == text, f"{name} of a {variant} project is stale: run `make lock`"


def test_tooling_lock_is_fresh(tmp_path):
    shipped = (ROOT / "tests" / "requirements.txt").read_text()
    assert locks.compiled_tooling_lock(tmp_path, upgrade=False).read_text() == shipped, (
        "tests/requirements.txt is stale: run `make lock`"
    )


def test_every_lock_is_used():
    """Each committed lock is what some worker class and database render; none is left over."""
    used = {
        locks.variant_for(worker_class, database, server)
        for worker_class in TEMPLATE["worker_class"]
        for database in TEMPLATE["database"]
        for server in TEMPLATE["server"]
        if not (server == "granian" and worker_class == "gevent")  # refused by the pre-generation hook
    }
    assert {path.parent.name for path in LOCK_FILES} == used == set(locks.VARIANTS)


def _dry_run(lock, python: str, platform: str, target) -> subprocess.CompletedProcess:
    """uv installing `lock` from wheels alone, as on `platform` with `python`, without installing anything."""
    return subprocess.run(
        [
            str(TOOLS / "uv"),
            "pip",
            "install",
            "--dry-run",
            "--target",
            str(target),
            "--require-hashes",
            "--only-binary",
            ":all:",
            "--python-platform",
            platform,
            "--python-version",
            python,
            "-r",
            str(lock),
        ],
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("python", TEMPLATE["python_version"])
@pytest.mark.parametrize("lock", LOCK_FILES, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_lock_installs_from_wheels_on_each_python_and_platform(lock, python, platform, tmp_path):
    """Every pin has a hash and a wheel for Linux x86_64 and aarch64 on each Python offered."""
    resolved = _dry_run(lock, python, platform, tmp_path)
    assert resolved.returncode == 0, resolved.stderr
    assert "Would install" in resolved.stderr


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize(("python", "package"), locks.WAITING_PYTHONS.items())
@pytest.mark.parametrize("lock", RUNTIME_LOCKS, ids=lambda path: path.parent.name)
def test_python_not_offered_yet_waits_for_a_wheel(lock, python, package, platform, tmp_path):
    """A Python left out of python_version is out because one locked package has no wheel for it, and only that."""
    assert python not in TEMPLATE["python_version"]
    resolved = _dry_run(lock, python, platform, tmp_path)
    assert resolved.returncode != 0, (
        f"every pin of {lock.parent.name}'s lock now has a wheel for Python {python}: offer it "
        f"(cookiecutter.json's python_version, the pre-generation hook) and drop it from locks.WAITING_PYTHONS"
    )
    assert f"Because {package}==" in resolved.stderr, resolved.stderr
    # Without that one package, everything else installs: nothing else is waited for.
    pins = re.split(r"\n(?=\S)", lock.read_text())
    without = tmp_path / "without.txt"
    without.write_text("\n".join(pin for pin in pins if not pin.startswith(f"{package}==")))
    rest = _dry_run(without, python, platform, tmp_path)
    assert rest.returncode == 0, rest.stderr


def test_railway_sdk_versions_are_exact():
    """The tooling's npm packages are pinned exactly, and its lock holds the same versions."""
    package = json.loads((ROOT / "tests" / "railway" / "package.json").read_text())
    lock = json.loads((ROOT / "tests" / "railway" / "package-lock.json").read_text())
    for name, version in package["dependencies"].items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} {version} is a range"
        assert lock["packages"][f"node_modules/{name}"]["version"] == version
        assert lock["packages"][f"node_modules/{name}"]["integrity"].startswith("sha512-")
