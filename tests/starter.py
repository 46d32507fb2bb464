"""The starter: the default project rendered into starter/, so a Railway template or a fork can deploy it.

`make starter` (python -m tests.starter) writes it; test_starter.py renders it again and compares.
"""

import shutil
import sys
import tempfile
from pathlib import Path

from cookiecutter.main import cookiecutter

ROOT = Path(__file__).resolve().parent.parent
STARTER = ROOT / "starter"
ANSWERS = ROOT / "starter.yaml"
# What a render, a test run or an editor adds and the starter's .gitignore keeps out of git.
NOT_SHIPPED = {"__pycache__", ".venv", ".pytest_cache", ".ruff_cache"}
NOTE = """\
> **Generated.** This folder is the template's default project, rendered by `make starter`
> from the answers in `../starter.yaml`; a test fails when it differs from a fresh render.
> To customise it, either regenerate it with your own answers (edit `starter.yaml`, then
> `make starter`; or run `cookiecutter` on this repository for a project elsewhere), or edit
> it in place and stop regenerating it: delete `starter.yaml` and the drift test stands down.
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


def write() -> None:
    with tempfile.TemporaryDirectory() as work:
        project = render(Path(work))
        shutil.rmtree(STARTER, ignore_errors=True)
        shutil.copytree(project, STARTER)
    print(f"wrote {STARTER.relative_to(ROOT)}/ ({len(files(STARTER))} files)", file=sys.stderr)


if __name__ == "__main__":
    write()
