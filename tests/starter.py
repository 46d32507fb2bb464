"""The starter: the default project rendered into starter/, so a Railway template or a fork can deploy it.

`make starter` (python -m tests.starter) renders it from starter.yaml's answers and records what it
wrote in starter.sha256; it refuses to overwrite starter/ when starter/ no longer matches that record
(someone edited it), unless forced. Without starter.yaml, starter/ belongs to whoever deleted it:
`make starter` stands down, and `make lock` (python -m tests.starter --locks) compiles starter/'s own
locks in place instead. test_starter.py renders it again and compares.
"""

import argparse
import hashlib
import shutil
import sys
import tempfile
from pathlib import Path

from cookiecutter.main import cookiecutter

ROOT = Path(__file__).resolve().parent.parent
STARTER = ROOT / "starter"
ANSWERS = ROOT / "starter.yaml"
# What the last render wrote, one `sha256  path` line per file (`cd starter && sha256sum -c ../starter.sha256`).
MANIFEST = ROOT / "starter.sha256"
# What a render, a test run or an editor adds and the starter's .gitignore keeps out of git.
NOT_SHIPPED = {"__pycache__", ".venv", ".pytest_cache", ".ruff_cache"}
NOTE = """\
> **Generated.** This folder is the template's default project, rendered by `make starter`
> from the answers in `../starter.yaml`; a test fails when it differs from a fresh render.
> To customise it, either regenerate it with your own answers (edit `starter.yaml`, then
> `make starter`; or run `cookiecutter` on this repository for a project elsewhere), or edit
> it in place and stop regenerating it: delete `starter.yaml`, and `make starter` and the
> drift test stand down (`make lock` then compiles this folder's locks in place).
> `make starter` never overwrites edits made here unless asked to (`make starter FORCE=1`).
> It is a complete project either way: deploying it needs no cookiecutter.

"""


def render(output: Path) -> Path:
    """The starter as `make starter` writes it, rendered under `output`."""
    project = Path(
        cookiecutter(
            str(ROOT), no_input=True, config_file=str(ANSWERS), output_dir=str(output), overwrite_if_exists=False
        )
    )
    readme = project / "README.md"
    readme.write_text(NOTE + readme.read_text())
    return project


def files(folder: Path) -> dict[str, bytes]:
    """Every file that ships, by path, with its bytes (and whether it is executable)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if NOT_SHIPPED.intersection(relative.parts) or not path.is_file():
            continue
        found[str(relative)] = (path.read_bytes(), path.stat().st_mode & 0o111 != 0)
    return found


def digests(folder: Path) -> dict[str, str]:
    """The SHA-256 of every file that ships, by path."""
    return {name: hashlib.sha256(content).hexdigest() for name, (content, _) in files(folder).items()}


def recorded() -> dict[str, str] | None:
    """What the last render wrote, from starter.sha256; None when there is no record."""
    if not MANIFEST.exists():
        return None
    return {name: digest for digest, name in (line.split("  ", 1) for line in MANIFEST.read_text().splitlines())}


def local_changes() -> list[str] | None:
    """Paths in starter/ added, changed or deleted since the last render; None when there is no record of it."""
    record = recorded()
    if record is None:
        return None
    now = digests(STARTER) if STARTER.exists() else {}
    return sorted(name for name in record.keys() | now.keys() if record.get(name) != now.get(name))


def replace_starter(project: Path) -> None:
    """Make starter/ ship exactly `project`'s files, leaving what is not shipped (.venv, caches) in place."""
    fresh = files(project)
    for name in files(STARTER) if STARTER.exists() else {}:
        if name not in fresh:
            (STARTER / name).unlink()
    for name in fresh:
        target = STARTER / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(project / name, target)
    for folder in sorted((path for path in STARTER.rglob("*") if path.is_dir()), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()


def write(force: bool) -> int:
    """Render starter/ and record it; refuse (exit status 1) when that would overwrite local changes."""
    changes = local_changes()
    if not force and STARTER.exists() and changes is None:
        print(
            f"starter/ is not rendered over: {MANIFEST.name} (what the last render wrote) is missing, so local"
            " changes cannot be told apart; `make starter FORCE=1` renders it anyway.",
            file=sys.stderr,
        )
        return 1
    if not force and changes:
        print(
            f"starter/ is not rendered over: it has local changes since the last render ({', '.join(changes)}). Keep"
            " them (commit them, and delete starter.yaml to stop regenerating), or `make starter FORCE=1` to"
            " overwrite them.",
            file=sys.stderr,
        )
        return 1
    with tempfile.TemporaryDirectory() as work:
        replace_starter(render(Path(work)))
    record = digests(STARTER)
    MANIFEST.write_text("".join(f"{digest}  {name}\n" for name, digest in sorted(record.items())))
    print(f"wrote {STARTER.relative_to(ROOT)}/ ({len(record)} files) and {MANIFEST.name}", file=sys.stderr)
    return 0


def refresh_locks() -> None:
    """Compile starter/'s own locks from its requirements*.in, upgraded, in place (a starter edited by hand)."""
    from .locks import PROJECT_LOCKS, compile_lock

    for name, arguments in PROJECT_LOCKS.items():
        compile_lock(STARTER, arguments, upgrade=True)
        print(f"locked {STARTER.relative_to(ROOT) / name}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.starter", description="render starter/ (make starter)")
    parser.add_argument("--force", action="store_true", help="render even over local changes (FORCE=1)")
    parser.add_argument("--locks", action="store_true", help="make lock: without starter.yaml, lock starter/ in place")
    args = parser.parse_args(argv)
    if ANSWERS.exists():
        return write(force=args.force)
    if args.locks:
        refresh_locks()
        return 0
    print(
        "starter.yaml is gone, so starter/ is edited by hand: `make starter` is standing down"
        " (`make lock` still refreshes starter/'s locks in place).",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
