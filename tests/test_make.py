"""The Makefile's housekeeping, run for real in a scratch copy."""

import shutil
import subprocess

from .support import ROOT

# What `make run`, `make test`, `make bench` and ruff leave in the repository.
MADE = (".venv", ".cache", ".ruff_cache", ".pytest_cache", "build", "tests/railway/node_modules", "tests/__pycache__")


def test_clean_removes_everything_make_and_its_tools_made(tmp_path):
    for name in ("Makefile", "cookiecutter.json"):
        shutil.copy(ROOT / name, tmp_path / name)
    for name in MADE:
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "leftover").write_text("x")
    (tmp_path / "tests" / "kept.py").write_text("x")
    subprocess.run(["make", "--no-print-directory", "clean"], cwd=tmp_path, check=True, capture_output=True)
    assert [name for name in MADE if (tmp_path / name).exists()] == []
    assert (tmp_path / "tests" / "kept.py").exists()
