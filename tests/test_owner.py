"""A project is its owner's: with the example routes replaced by their own, its whole suite passes."""

import shutil

from .support import SKIPS, run_project_tests

# The owner's own blueprint, unrelated to the examples, with its own test.
NOTES = '''\
"""Notes: the owner's first resource."""

from flask import Blueprint

bp = Blueprint("notes", __name__, url_prefix="/notes")


@bp.get("")
def index():
    """Every note."""
    return {"notes": []}
'''
NOTES_TEST = """\
def test_notes_start_empty(client):
    assert client.get("/notes").get_json() == {"notes": []}
"""


def replace_examples(project) -> None:
    """What a new owner does first: delete the example routes and their tests, add their own."""
    package = project / "my_service"
    (package / "views.py").unlink()
    (project / "tests" / "test_views.py").unlink()
    (package / "notes.py").write_text(NOTES)
    (project / "tests" / "test_notes.py").write_text(NOTES_TEST)
    factory = package / "__init__.py"
    code = factory.read_text().replace("from . import views", "from . import notes")
    factory.write_text(code.replace("views.bp", "notes.bp"))
    shutil.rmtree(project / "tests" / "__pycache__", ignore_errors=True)


def test_a_project_without_the_examples_passes_its_suite(cookies, tmp_path):
    """The owner's `pytest` runs the owner's tests only, in seconds, with no redis-server, nginx or prometheus."""
    result = cookies.bake()
    assert result.exception is None, result.exception
    replace_examples(result.project_path)
    assert "views" not in (result.project_path / "my_service" / "__init__.py").read_text()
    assert list((result.project_path / "tests").glob("test_*.py")), "the owner's tests are gone"
    platform = result.project_path / "railkit"
    platform_tests = [
        path
        for path in platform.rglob("*")
        if path.name.startswith("test_") or path.name in ("conftest.py", "tests", "fixture_app.py")
    ]
    assert platform_tests == [], "the platform's tests travel with the project"
    # CI set, and nothing on PATH: no redis-server, nginx, prometheus or Postgres to be found.
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {"CI": "true", "PATH": str(empty)}
    outcome = run_project_tests(result.project_path, "-rs", "-vv", env=env)  # -vv: one more than -q
    assert outcome.returncode == 0, outcome.stdout[-20000:] + outcome.stderr[-5000:]
    assert " passed" in outcome.stdout and not SKIPS.search(outcome.stdout), outcome.stdout[-3000:]
    collected = [line for line in outcome.stdout.splitlines() if "::" in line and line.rstrip().endswith("PASSED")]
    assert all(line.startswith("tests/") for line in collected), collected
    assert "tests/test_notes.py::test_notes_start_empty PASSED" in outcome.stdout
