"""Bake the template for every plan and worker class; each project is clean and passes its tests."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cookiecutter.exceptions import FailedHookException

from . import locks
from .support import PLAN_NAMES, ROOT, TEMPLATE, TOOLS, project_venv, run_project_tests

WORKER_CLASSES = ("gthread", "gevent", "sync")
PYTHONS = tuple(sorted(TEMPLATE["python_version"], key=locks.version_key))
# The glibc of each Debian release an image may be based on, and the suite the Dockerfile names.
DEBIAN_GLIBC = {"bookworm": "2.36", "trixie": "2.41"}
DOCKER_BASE = re.compile(r"^FROM python:(?P<python>[\d.]+)-slim-(?P<suite>\w+)$", re.MULTILINE)

# Every plan with every worker class; the Python versions rotate through them so
# each is used by several projects (each with every worker class, while there are as many plans).
SUPPORTED_COMBINATIONS = [
    {"railway_plan": plan, "worker_class": worker_class, "python_version": PYTHONS[(p + w) % len(PYTHONS)]}
    for p, plan in enumerate(PLAN_NAMES)
    for w, worker_class in enumerate(WORKER_CLASSES)
] + [
    {"railway_plan": "free", "use_redis": False, "use_docker": False},
    {"railway_plan": "trial", "use_redis": False},
    {"railway_plan": "hobby", "database": "postgres"},
    {"railway_plan": "pro", "worker_class": "gevent", "database": "postgres", "python_version": "3.15"},
    {"railway_plan": "pro", "worker_class": "gevent", "use_tracing": "yes"},
    {"railway_plan": "hobby", "server": "granian", "use_tracing": "yes"},
    {"railway_plan": "trial", "server": "granian", "worker_class": "sync", "database": "postgres"},
    {"project_name": 'Ünïcode "Quoted" \\ Name', "project": "odd-name", "package": "odd_name"},
]
UNSUPPORTED_COMBINATIONS = [
    ({"project": "Bad Folder"}, "ERROR: project 'Bad Folder' is not a valid folder"),
    ({"package": "flask"}, "ERROR: package 'flask' would shadow"),
    ({"package": "not-an-identifier"}, "ERROR: package 'not-an-identifier' is not a valid Python import name"),
    ({"railway_plan": "hobby", "use_redis": False}, "ERROR: use_redis 'no' leaves the hobby plan's 2 replicas"),
    ({"server": "granian", "worker_class": "gevent"}, "ERROR: server 'granian' cannot serve gevent workers"),
]
LEFTOVER = re.compile(r"{{(\s?cookiecutter)[.](.*?)}}|{%|%}")


def _fixture_id(context: dict) -> str:
    return "-".join(f"{key}:{value}" for key, value in context.items())


def check_paths(project: Path) -> None:
    """No file name or text keeps an unrendered cookiecutter tag."""
    for path in project.rglob("*"):
        assert not LEFTOVER.search(str(path.relative_to(project))), path
        if path.is_file() and ".venv" not in path.parts:
            assert not LEFTOVER.search(path.read_text(errors="ignore")), path


def check_platform_is_verbatim(project: Path) -> None:
    """The platform arrives byte for byte: one source, in the template's railkit/, rendered never."""
    source = ROOT / "railkit" / "railkit"

    caches = {"__pycache__", ".ruff_cache", ".pytest_cache"}  # a working copy's, never the project's

    def files(folder: Path) -> dict[str, bytes]:
        return {
            str(path.relative_to(folder)): path.read_bytes()
            for path in folder.rglob("*")
            if path.is_file() and not caches & set(path.relative_to(folder).parts)
        }

    assert not (project / "railkit").is_symlink()
    assert not [path for path in (project / "railkit").rglob("*") if path.name in caches]
    assert files(project / "railkit") == files(source)


def bake_ok(cookies, context: dict) -> Path:
    result = cookies.bake(extra_context=context)
    assert result.exception is None, result.exception
    assert result.exit_code == 0
    return result.project_path


@pytest.mark.parametrize("context", SUPPORTED_COMBINATIONS, ids=_fixture_id)
def test_project_generation(cookies, context):
    """Every combination renders cleanly, lints clean, and passes its own tests."""
    project = bake_ok(cookies, context)
    check_paths(project)
    check_platform_is_verbatim(project)
    for command in (["check"], ["format", "--check"]):
        ruff = subprocess.run(
            [str(TOOLS / "ruff"), *command, "--no-cache", "."], cwd=project, capture_output=True, text=True
        )
        assert ruff.returncode == 0, ruff.stdout + ruff.stderr
    result = run_project_tests(project)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("python", PYTHONS)
def test_each_python_is_pinned_alike_everywhere(cookies, python):
    """Railpack, the package metadata, ruff and the Dockerfile name one Python, on a glibc its wheels install on."""
    project = bake_ok(cookies, {"python_version": python})
    assert (project / ".python-version").read_text().strip() == python
    pyproject = (project / "pyproject.toml").read_text()
    assert f'requires-python = ">={python}"' in pyproject
    assert f'target-version = "py{python.replace(".", "")}"' in pyproject
    base = DOCKER_BASE.search((project / "docker" / "Dockerfile").read_text())
    assert base and base["python"] == python, "the image is not the pinned Python's"
    glibc = DEBIAN_GLIBC[base["suite"]]
    assert locks.version_key(glibc) >= locks.version_key(locks.glibc_floor(python)), (base["suite"], glibc)


# Each plan's row of the README's budget table, as the project's own railkit sizes and budgets it.
BUDGET_CELLS = """\
import json, sys
from railkit.cluster import limits
from railkit.cluster.sizing import Measure, size_cluster
from railkit.db.budget import DEPLOYMENTS_AT_ONCE, BudgetError, ServerLimits, plan_budget, replicas_of
from railkit.db.config import read_database_settings
from railkit.settings import Settings
rows = {}
for plan in json.loads(sys.argv[1]):
    env = {"RAILWAY_PLAN": plan, "DATABASE_URL": "postgresql://u@postgres.railway.internal:5432/railway"}
    settings = Settings.from_env(env)
    size = size_cluster(settings, Measure(settings.plan.vcpu, "plan"), Measure(settings.plan.memory_mb, "plan"))
    concurrency = limits.WORKER_CONNECTIONS if settings.worker_class == "gevent" else size.threads
    replicas, reserved = replicas_of(settings.plan), read_database_settings(settings, env).reserved
    try:
        budget = plan_budget(usable=ServerLimits(100, "max_connections"), workers=size.workers,
                             concurrency=concurrency, replicas=replicas, reserved=reserved)
        cell = f"{budget.per_worker} per worker, {budget.service_total} at most"
    except BudgetError:
        cell = f"refused: needs max_connections \u2265 {size.workers * replicas * DEPLOYMENTS_AT_ONCE + reserved}"
    rows[settings.plan.label] = [f"{size.workers} \u00d7 {replicas}", cell]
print(json.dumps(rows))
"""


@pytest.mark.parametrize(
    "answers",
    [{"worker_class": "gthread"}, {"worker_class": "gevent"}, {"worker_class": "sync"}, {"server": "granian"}],
    ids=["gthread", "gevent", "sync", "granian"],
)
def test_the_readmes_budget_table_is_the_platforms_own_arithmetic(cookies, answers):
    """The table is Jinja (the README is rendered, not run): each row equals what the project's railkit decides."""
    project = bake_ok(cookies, {"database": "postgres", **answers})
    readme = (project / "README.md").read_text()
    table = readme.split("Each plan's budget on a default Postgres", 1)[1].split("\n\n", 2)[1]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()[2:]]
    python = project_venv(project) / "bin" / "python"
    found = subprocess.run(
        [str(python), "-c", BUDGET_CELLS, json.dumps(PLAN_NAMES)], cwd=project, capture_output=True, text=True
    )
    assert found.returncode == 0, found.stderr
    assert {label: cells for label, *cells in rows} == json.loads(found.stdout)


def test_docker_files_only_when_asked(cookies):
    assert (bake_ok(cookies, {"use_docker": True}) / "docker" / "Dockerfile").exists()
    project = bake_ok(cookies, {"use_docker": False})
    assert not (project / "docker").exists() and not (project / ".dockerignore").exists()


def test_the_free_plan_gets_no_redis_service(cookies):
    """One replica of one process counts the limit exactly in its own memory: a Redis service would only cost."""
    project = bake_ok(cookies, {"railway_plan": "free"})
    for name in (".railway/railway.ts", "railway-template.json"):
        assert "REDIS_URL" not in (project / name).read_text(), name
    assert json.loads((project / "railkit.json").read_text())["use_redis"] is False
    assert "REDIS_URL" in (bake_ok(cookies, {"railway_plan": "trial"}) / ".railway" / "railway.ts").read_text()


def test_opentelemetry_only_in_projects_generated_with_traces(cookies):
    """use_tracing=no: no OpenTelemetry package, in the inputs or the locks; yes: the SDK, the exporter, Flask's."""
    untraced = bake_ok(cookies, {"database": "postgres"})
    for name in ("requirements.in", "requirements.txt", "requirements-dev.txt"):
        assert "opentelemetry" not in (untraced / name).read_text(), name
    assert json.loads((untraced / "railkit.json").read_text())["use_tracing"] is False
    traced = bake_ok(cookies, {"database": "postgres", "use_tracing": "yes"})
    lock = (traced / "requirements.txt").read_text()
    for package in ("sdk", "exporter-otlp-proto-http", "instrumentation-flask", "instrumentation-psycopg", "proto"):
        assert f"\nopentelemetry-{package}==" in lock, package
    assert json.loads((traced / "railkit.json").read_text())["use_tracing"] is True


def test_granian_only_required_by_granian_projects(cookies):
    project = bake_ok(cookies, {"server": "granian"})
    assert "granian==" in (project / "requirements.txt").read_text()
    assert json.loads((project / "railkit.json").read_text())["server"] == "granian"
    assert "granian" not in (bake_ok(cookies, {}) / "requirements.txt").read_text()


def test_gevent_only_required_by_gevent_projects(cookies):
    assert "gevent" in (bake_ok(cookies, {"worker_class": "gevent"}) / "requirements.txt").read_text()
    assert "gevent" not in (bake_ok(cookies, {"worker_class": "sync"}) / "requirements.txt").read_text()


@pytest.mark.parametrize(("context", "message"), UNSUPPORTED_COMBINATIONS, ids=[m for _, m in UNSUPPORTED_COMBINATIONS])
def test_error_if_incompatible(cookies, tmpdir, capfd, context, message):
    """Bad answers fail the pre-generation hook with one line naming them; nothing is left."""
    result = cookies.bake(extra_context=context)
    assert isinstance(result.exception, FailedHookException)
    assert message in capfd.readouterr().err
    assert not list(Path(tmpdir).rglob("*.py")), "the refused project was left on disk"


def test_bad_answer_on_the_command_line_is_one_line_as_typed(tmp_path):
    """What a user sees: the answer as given, then that nothing was written, before cookiecutter's traceback."""
    refused = subprocess.run(
        [str(TOOLS / "cookiecutter"), str(ROOT), "--no-input", "-o", str(tmp_path), "use_redis=no"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = refused.stdout
    assert "ERROR: use_redis 'no' leaves the hobby plan's 2 replicas" in output
    assert output.index("Nothing was written") < output.index("Traceback")
    assert list(tmp_path.iterdir()) == []


def test_no_input_with_defaults(tmp_path):
    """`cookiecutter <template> --no-input` works with every default."""
    subprocess.run(
        [str(TOOLS / "cookiecutter"), str(ROOT), "--no-input", "-o", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    project = tmp_path / "my-service"
    assert (project / "main.py").exists() and (project / "gunicorn.conf.py").exists()
    assert (project / ".railway" / "railway.ts").exists()
    assert not (project / "railway.json").exists()


def test_template_tests_run_on_the_template_python():
    assert sys.version_info >= (3, 11)
