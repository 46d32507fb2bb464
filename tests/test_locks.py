"""The locks: fresh against their inputs, installable everywhere the template offers, used everywhere."""

import itertools
import json
import re
import subprocess

import pytest

from . import locks
from .support import ROOT, TEMPLATE, TOOLS

# Railway and most hosts: Linux on both architectures, at the oldest glibc each Python promises (locks.glibc_floor).
ARCHITECTURES = ("x86_64", "aarch64")
# uv's manylinux platforms: the one just below a floor is where its package's wheels stop.
UV_GLIBCS = ("2.17", "2.28", *(f"2.{minor}" for minor in range(31, 41)))
TEMPLATE_FOLDER = ROOT / "{{cookiecutter.project}}"
# One worker runs them all: uv runs side by side wait on each other's cache locks (10 at once: 4x slower).
pytestmark = pytest.mark.xdist_group("locks")
LOCK_FILES = sorted(locks.LOCKS.glob("*/requirements*.txt"))
# What Railway installs: the dev locks add only tools that publish wheels for any Python.
RUNTIME_LOCKS = sorted(locks.LOCKS.glob("*/requirements.txt"))
# Each holds its runtime lock, pin for pin (test_each_dev_lock_holds_its_runtime_lock): the wheel checks read these.
DEV_LOCKS = sorted(locks.LOCKS.glob("*/requirements-dev.txt"))


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
    """Each committed lock is what some worker class, server, database and tracing answer render; none is left over."""
    used = {
        locks.variant_for(worker_class, database, use_tracing, server)
        for worker_class in TEMPLATE["worker_class"]
        for database in TEMPLATE["database"]
        for use_tracing in TEMPLATE["use_tracing"]
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


def _platform(architecture: str, glibc: str) -> str:
    return f"{architecture}-manylinux_{glibc.replace('.', '_')}"


def _pins(lock) -> list[str]:
    """Each requirement of a lock with its hashes and comments, in order."""
    return re.split(r"\n(?=\S)", lock.read_text())


def _install(lock, python: str, platform: str, target) -> subprocess.CompletedProcess:
    """uv installing `lock` from wheels into `target`, as on `platform` with `python`: each file's hash is checked."""
    return subprocess.run(
        [
            str(TOOLS / "uv"),
            "pip",
            "install",
            "--no-deps",
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


def _hashed_pins(lock) -> set[str]:
    """Each requirement of a lock with its hashes, without the comments that say where it came from."""
    return {
        " ".join(line.strip() for line in pin.splitlines() if not line.strip().startswith("#"))
        for pin in _pins(lock)
        if not pin.startswith("#")
    }


@pytest.mark.parametrize("runtime", RUNTIME_LOCKS, ids=lambda path: path.parent.name)
def test_each_dev_lock_holds_its_runtime_lock(runtime):
    """The same versions and hashes: what Railway installs is installed by the owner's dev lock too."""
    missing = _hashed_pins(runtime) - _hashed_pins(runtime.with_name("requirements-dev.txt"))
    assert not missing, f"{runtime.parent.name}'s dev lock differs from its runtime lock: run `make lock`"


@pytest.mark.parametrize("lock", DEV_LOCKS, ids=lambda path: path.parent.name)
def test_lock_installs_from_wheels_on_each_python_and_platform(lock, tmp_path):
    """Every pin has a hash and a wheel for Linux x86_64 and aarch64 on each Python offered, from its glibc floor up."""
    failed = {}
    for python, architecture in itertools.product(TEMPLATE["python_version"], ARCHITECTURES):
        resolved = _dry_run(lock, python, _platform(architecture, locks.glibc_floor(python)), tmp_path)
        if resolved.returncode or "Would install" not in resolved.stderr:
            failed[python, architecture] = resolved.stderr
    assert not failed, failed


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize(("python", "floor"), locks.PYTHON_GLIBC.items())
@pytest.mark.parametrize("lock", RUNTIME_LOCKS, ids=lambda path: path.parent.name)
def test_below_a_pythons_glibc_floor_one_named_package_lacks_a_wheel(lock, python, floor, architecture, tmp_path):
    """Where a Python needs a newer glibc than the others, one locked package is why, and only that one.

    Its wheels' hashes are in the lock (installed for real, so uv checks them); just below the floor the
    lock needs a source build of that package, and of nothing else.
    """
    glibc, package = floor
    pin = [pin for pin in _pins(lock) if pin.startswith(f"{package}==")]
    assert pin, f"{lock.parent.name}'s lock has no {package}: drop {python} from locks.PYTHON_GLIBC"
    only = tmp_path / "only.txt"
    only.write_text(pin[0] + "\n")
    installed = _install(only, python, _platform(architecture, glibc), tmp_path / "target")
    assert installed.returncode == 0, installed.stderr
    below = _platform(architecture, UV_GLIBCS[UV_GLIBCS.index(glibc) - 1])
    resolved = _dry_run(lock, python, below, tmp_path)
    assert resolved.returncode != 0, (
        f"{package} now has Python {python} wheels for glibc older than {glibc} ({below}): lower its floor "
        f"in locks.PYTHON_GLIBC and in the README's Python table"
    )
    assert f"Because {package}==" in resolved.stderr, resolved.stderr
    without = tmp_path / "without.txt"
    without.write_text("\n".join(pin for pin in _pins(lock) if not pin.startswith(f"{package}==")))
    rest = _dry_run(without, python, below, tmp_path)
    assert rest.returncode == 0, rest.stderr


def test_readme_states_each_pythons_glibc_floor():
    """Both READMEs' Python tables give each offered Python the glibc its locks need."""
    for readme in (ROOT / "README.md", TEMPLATE_FOLDER / "README.md"):
        for python in TEMPLATE["python_version"]:
            [row] = re.findall(rf"^\| {re.escape(python)} \|.*$", readme.read_text(), re.MULTILINE)
            assert f"glibc {locks.glibc_floor(python)}" in row, (readme, row)


def test_railway_sdk_versions_are_exact():
    """The tooling's npm packages are pinned exactly, and its lock holds the same versions."""
    package = json.loads((ROOT / "tests" / "railway" / "package.json").read_text())
    lock = json.loads((ROOT / "tests" / "railway" / "package-lock.json").read_text())
    for name, version in package["dependencies"].items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} {version} is a range"
        assert lock["packages"][f"node_modules/{name}"]["version"] == version
        assert lock["packages"][f"node_modules/{name}"]["integrity"].startswith("sha512-")
