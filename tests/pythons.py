"""Interpreters this machine lacks (Python 3.14, 3.15), taken from Debian's testing suite into a folder the tests own.

`python -m tests.pythons` provisions them (`make test` runs it first) and prints where each is;
tests get them through support.python_for(). A minimal forky tree (debootstrap) holds Debian's
python3.X and python3.X-venv. Each interpreter is patched to load forky's own dynamic loader and
libraries (patchelf), so it runs on this host like a local build: venvs, fork and exec of
sys.executable included, with no chroot, no change to the host and nothing inherited by the
programs it starts. The tree is cached in .cache/forky and built again only when what it should
hold changes.
"""

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = (ROOT / ".cache").resolve()  # a worktree may link it to a shared one
TREE = CACHE / "forky"
SUITE = "forky"
# The Pythons Debian's forky carries: what this module can provide.
FORKY_PYTHONS = ("3.14", "3.15")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# What the tree holds and where, written last: a tree without it, or with another, is built again.
STAMP = TREE / ".tests-pythons.json"
# Debian's wheels for ensurepip; its sysconfig names the host's folder, which holds other versions.
WHEEL_DIR = "/usr/share/python-wheels/"


class Unavailable(RuntimeError):
    """This machine cannot provide the interpreter; the message says how to get it."""


def find(version: str) -> str:
    """An interpreter for `version`: pyenv's, one on PATH, then Debian forky's (provisioned if need be)."""
    found = sorted((Path.home() / ".pyenv" / "versions").glob(f"{version}.*/bin/python{version}"))
    if found:
        return str(found[-1])
    on_path = shutil.which(f"python{version}")
    if on_path:
        return on_path
    return str(interpreter(version))


def interpreter(version: str) -> Path:
    """The forky interpreter for `version`, provisioned first if need be; Unavailable if it cannot be."""
    if version not in FORKY_PYTHONS:
        raise Unavailable(f"Debian's {SUITE} has no Python {version}")
    provision()
    return TREE / "usr" / "bin" / f"python{version}"


def provision(versions: tuple[str, ...] = FORKY_PYTHONS) -> float:
    """Every version in `versions` runnable from the tree; returns the seconds spent building (0 when cached)."""
    CACHE.mkdir(exist_ok=True)
    wanted = _stamp(versions)
    with open(CACHE / "forky.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _read_stamp() == wanted:
            return 0.0
        started = time.monotonic()
        _build(versions)
        STAMP.write_text(json.dumps(wanted))
        return time.monotonic() - started


def _stamp(versions: tuple[str, ...]) -> dict:
    # The tree's own path is in it: the patched interpreters name it, so a moved tree is rebuilt.
    return {"tree": str(TREE), "suite": SUITE, "versions": sorted(versions), "machine": os.uname().machine}


def _read_stamp() -> dict | None:
    try:
        return json.loads(STAMP.read_text())
    except (OSError, ValueError):
        return None


def _build(versions: tuple[str, ...]) -> None:
    if os.geteuid() != 0:
        raise Unavailable(
            f"building Debian {SUITE}'s Python {', '.join(versions)} needs root (debootstrap): "
            f"run `sudo {sys.executable} -m tests.pythons` once, or install them another way"
        )
    debootstrap, patchelf = _host_tools("debootstrap", "patchelf")
    shutil.rmtree(TREE, ignore_errors=True)
    packages = [name for version in versions for name in (f"python{version}", f"python{version}-venv")]
    command = [
        debootstrap,
        "--variant=minbase",
        f"--include={','.join(packages)}",
        SUITE,
        str(TREE),
        _mirror(),
        _script(),
    ]
    # debootstrap runs chroot and friends from the sbin folders, which a non-login PATH may lack.
    env = {**os.environ, "PATH": f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin"}
    built = subprocess.run(command, capture_output=True, text=True, env=env)
    if built.returncode != 0:
        log = TREE / "debootstrap" / "debootstrap.log"
        detail = log.read_text()[-2000:] if log.exists() else built.stdout[-2000:] + built.stderr[-2000:]
        raise Unavailable(f"debootstrap of Debian {SUITE} failed ({' '.join(command)}):\n{detail}")
    for version in versions:
        _make_runnable_here(version, patchelf)


def _make_runnable_here(version: str, patchelf: str) -> None:
    """Point the interpreter at the tree's loader and libraries, and ensurepip at the tree's wheels."""
    binary = TREE / "usr" / "bin" / f"python{version}"
    loader = _inside_tree(_run(patchelf, "--print-interpreter", str(binary)))
    # The tree's libraries first, for every library the process loads (an RPATH, unlike a RUNPATH,
    # also serves the extension modules' own dependencies): never the host's C library.
    libraries = [str(folder) for folder in sorted((TREE / "usr" / "lib").glob("*-linux-gnu*")) if folder.is_dir()]
    _run(
        patchelf,
        "--set-interpreter",
        str(loader),
        "--force-rpath",
        "--set-rpath",
        ":".join(libraries),
        str(binary),
    )
    for data in (TREE / "usr" / "lib" / f"python{version}").glob("_sysconfigdata_*.py"):
        text = data.read_text()
        data.write_text(text.replace(f"'{WHEEL_DIR}'", f"'{TREE}{WHEEL_DIR}'"))
    check = subprocess.run(
        [str(binary), "-c", "import ensurepip, ssl, sqlite3, ctypes, sys; print(sys.version)"],
        capture_output=True,
        text=True,
    )
    if check.returncode != 0:
        raise Unavailable(f"Debian {SUITE}'s python{version} does not run on this host:\n{check.stderr}")


def _inside_tree(path: str) -> Path:
    """The tree's own file at `path` (Debian links it relatively, so it resolves within the tree)."""
    found = (TREE / path.lstrip("/")).resolve()
    if TREE.resolve() not in found.parents:
        raise Unavailable(f"{path} in the {SUITE} tree leads out of it, to {found}")
    return found


def _script() -> str:
    """debootstrap's script for the suite; an older debootstrap lacks forky's, which is sid's."""
    scripts = Path("/usr/share/debootstrap/scripts")
    return str(scripts / SUITE) if (scripts / SUITE).exists() else str(scripts / "sid")


def _mirror() -> str:
    """The Debian mirror apt uses on this host (FORKY_MIRROR overrides it)."""
    if os.environ.get("FORKY_MIRROR"):
        return os.environ["FORKY_MIRROR"]
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for source in sources:
        text = source.read_text(errors="ignore") if source.is_file() else ""
        for uri in re.findall(r"(?:^URIs:\s*|^deb\s+(?:\[[^]]*\]\s+)?)(\S+)", text, re.MULTILINE):
            if uri.rstrip("/").endswith("/debian"):
                return uri.rstrip("/")
    return DEFAULT_MIRROR


def _host_tools(*tools: str) -> list[str]:
    """Each tool's path, installed from Debian's packages (named like the tools) when missing."""
    search = f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin"
    missing = [tool for tool in tools if not shutil.which(tool, path=search)]
    if missing:
        if not shutil.which("apt-get"):
            raise Unavailable(f"needs {' '.join(missing)}: install them to build Debian {SUITE}'s Pythons")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            if done.returncode != 0:
                raise Unavailable(f"`{' '.join(command)}` failed:\n{done.stderr[-2000:]}")
    return [shutil.which(tool, path=search) or tool for tool in tools]


def _run(*command: str) -> str:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise Unavailable(f"`{' '.join(command)}` failed:\n{done.stderr}")
    return done.stdout.strip()


def main(argv: list[str]) -> int:
    """Provision every forky Python and say where each is; with `--which VERSION`, print that interpreter's path.

    When they cannot be had, CI fails here; elsewhere the tests that need them skip and say how.
    """
    try:
        if argv[:1] == ["--which"] and len(argv) == 2:
            print(find(argv[1]))
            return 0
        seconds = provision()
    except Unavailable as error:
        print(f"tests.pythons: {error}", file=sys.stderr)
        return 1 if os.environ.get("CI") or argv else 0
    action = f"built in {seconds:.0f} s" if seconds else "cached"
    for version in FORKY_PYTHONS:
        print(f"Python {version} ({action}): {interpreter(version)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
