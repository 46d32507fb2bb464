"""The hooks' helpers, imported and called directly."""

import copy
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from hooks import post_gen_project, pre_gen_project

from . import locks
from .support import PLANS, ROOT, TEMPLATE

GOOD = {
    "project_name": "My Service",
    "description": "A clustered Flask backend for Railway.",
    "project": "my-service",
    "package": "my_service",
    "railway_plan": "hobby",
    "worker_class": "gthread",
    "python_version": "3.13",
    "use_redis": True,
    "use_docker": True,
    "use_tracing": "no",
    "database": "none",
    "github_repository": "",
    "_plans": PLANS,
}


def test_good_answers_pass():
    assert pre_gen_project.problems(GOOD) == []


# Locked distributions whose import name is not their name with dashes as underscores.
IMPORT_NAMES = {
    "python-json-logger": "pythonjsonlogger",
    "zope-event": "zope",
    "zope-interface": "zope",
    "protobuf": "google",
    "googleapis-common-protos": "google",
}
# Every OpenTelemetry distribution installs into the one namespace package `opentelemetry`.
NAMESPACE_PREFIXES = {"opentelemetry-": "opentelemetry"}


def test_no_locked_package_can_be_shadowed_by_the_projects_package():
    locked = {
        line.split("==")[0]
        for lock in (ROOT / "templates" / "locks").glob("*/requirements*.txt")
        for line in lock.read_text().splitlines()
        if "==" in line and not line.startswith((" ", "#"))
    }
    imports = {
        next((space for prefix, space in NAMESPACE_PREFIXES.items() if name.startswith(prefix)), None)
        or IMPORT_NAMES.get(name, name.replace("-", "_"))
        for name in locked
    }
    assert imports - pre_gen_project.TAKEN_NAMES == set()


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("project_name", "  ", "is empty"),
        ("description", "two\nlines", "control characters"),
        ("project", "My Service", "not a valid folder"),
        ("project", "-leading-dash", "not a valid folder"),
        ("project", "double--dash", "not a valid folder"),
        ("project", "x" * 64, "not a valid folder"),
        ("package", "my-service", "not a valid Python import name"),
        ("package", "class", "not a valid Python import name"),
        ("package", "MyService", "not a valid Python import name"),
        ("package", "flask", "would shadow"),
        ("package", "json", "would shadow"),
        ("railway_plan", "platinum", "is not offered"),
        ("worker_class", "eventlet", "is not offered"),
        ("python_version", "3.9", "is not offered"),
        ("database", "mysql", "is not offered"),
        ("use_docker", "maybe", "is not a yes/no answer"),
        ("github_repository", "acme", "is not a GitHub repository"),
        ("github_repository", "https://github.com/acme/shop", "is not a GitHub repository"),
        ("github_repository", "acme/shop/../etc", "is not a GitHub repository"),
        ("github_repository", "acme/my shop", "is not a GitHub repository"),
        ("github_repository", "acme/..", "is not a GitHub repository"),
        ("github_repository", "acme/shop/", "is not a GitHub repository"),
    ],
)
def test_each_bad_answer_is_one_line_naming_it(variable, value, expected):
    answers = {**GOOD, variable: value}
    [line] = pre_gen_project.problems(answers)
    assert line.startswith(f"ERROR: {variable} {value!r} ")
    assert expected in line
    assert line.count("\n") == 0 and ": " in line


@pytest.mark.parametrize(
    "repository", ["", "acme/shop", "acme-inc/shop.py", "acme/shop/starter", "acme/mono/services/web"]
)
def test_github_repository_may_be_empty_or_owner_name_and_folder(repository):
    assert pre_gen_project.problems({**GOOD, "github_repository": repository}) == []


@pytest.mark.parametrize("answer", [True, False])
def test_yes_no_answers_are_echoed_as_asked(answer):
    assert pre_gen_project.as_typed(answer) == ("yes" if answer else "no")


@pytest.mark.parametrize("plan", ["hobby", "pro", "enterprise"])
def test_many_replicas_without_redis_is_refused(plan):
    [line] = pre_gen_project.problems({**GOOD, "railway_plan": plan, "use_redis": False})
    assert line.startswith("ERROR: use_redis 'no' ")
    assert "replicas" in line


@pytest.mark.parametrize("plan", ["free", "trial"])
def test_one_replica_plans_may_skip_redis(plan):
    assert pre_gen_project.problems({**GOOD, "railway_plan": plan, "use_redis": False}) == []


def test_trial_may_keep_redis_for_its_workers():
    assert pre_gen_project.problems({**GOOD, "railway_plan": "trial", "use_redis": True}) == []


def _cookiecutter(tmp_path, *answers: str) -> subprocess.CompletedProcess:
    """The cookiecutter command line, as a user runs it, with --no-input and these answers."""
    command = [sys.executable, "-m", "cookiecutter", str(ROOT), "--no-input", "-o", str(tmp_path), *answers]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", ["", "   "])
def test_an_empty_project_name_gets_the_hooks_line(tmp_path, name):
    """Not cookiecutter's '"." directory already exists': the project folder never renders to ""."""
    run = _cookiecutter(tmp_path, f"project_name={name}")
    assert run.returncode != 0
    assert f"ERROR: project_name {name!r} is empty" in run.stderr, run.stderr
    assert "already exists" not in run.stdout + run.stderr
    assert list(tmp_path.iterdir()) == [], "nothing is written"


@pytest.mark.parametrize(
    ("answer", "last_line"),
    [
        ("railway_plan=platinum", "ValueError: platinum provided for choice variable railway_plan, but the choices"),
        ("use_redis=maybe", "ValueError: maybe provided for variable use_redis could not be converted to a boolean."),
    ],
)
def test_an_answer_outside_a_choice_list_is_refused_by_cookiecutter_itself(tmp_path, answer, last_line):
    """As the README says: cookiecutter stops before the hooks, its traceback's last line naming the answer."""
    run = _cookiecutter(tmp_path, answer)
    assert run.returncode != 0
    assert run.stderr.strip().splitlines()[-1].startswith(last_line), run.stderr
    assert list(tmp_path.iterdir()) == []


def test_hook_offers_exactly_the_template_choices():
    assert set(pre_gen_project.PLANS) == set(TEMPLATE["railway_plan"]) == set(PLANS)
    assert set(pre_gen_project.WORKER_CLASSES) == set(TEMPLATE["worker_class"])
    assert set(pre_gen_project.SERVERS) == set(TEMPLATE["server"])
    assert set(pre_gen_project.PYTHON_VERSIONS) == set(TEMPLATE["python_version"])
    assert set(pre_gen_project.DATABASES) == set(TEMPLATE["database"])


def test_granian_with_gevent_is_refused_naming_the_server():
    """granian runs no gevent worker: the answer is refused in one line that says what to choose."""
    found = pre_gen_project.problems({**GOOD, "server": "granian", "worker_class": "gevent"})
    assert found == [
        "ERROR: server 'granian' cannot serve gevent workers: choose worker_class gthread or sync, or server gunicorn"
    ]
    assert pre_gen_project.problems({**GOOD, "server": "granian", "worker_class": "sync"}) == []


def test_remove_docker_files(tmp_path):
    for name in (*post_gen_project.DOCKER_FILES, "main.py"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x")
    post_gen_project.remove_docker_files(tmp_path)
    assert [path.name for path in tmp_path.iterdir()] == ["main.py"]


def test_the_dockerfile_is_not_where_railway_would_build_it():
    """A root Dockerfile would make Railway build it instead of Railpack (builds/dockerfiles.md)."""
    assert "Dockerfile" not in post_gen_project.DOCKER_FILES
    assert not (ROOT / "{{cookiecutter.project}}" / "Dockerfile").exists()
    assert (ROOT / "{{cookiecutter.project}}" / "docker" / "Dockerfile").exists()


def test_next_steps_name_the_project_and_its_commands():
    steps = post_gen_project.next_steps(copy.deepcopy(GOOD))
    assert "cd my-service" in steps
    assert "python -m railkit.cluster serve" in steps
    assert "python -m railkit.cluster status" in steps
    assert "my_service/" in steps and "railkit/" in steps
    assert "railway config apply" in steps
    assert "DATABASE_URL" not in steps
    with_postgres = post_gen_project.next_steps({**GOOD, "database": "postgres"})
    assert "export DATABASE_URL=" in with_postgres and "python -m railkit.db migrate" in with_postgres


@pytest.mark.parametrize("python", TEMPLATE["python_version"])
def test_next_steps_say_what_to_do_without_the_pinned_python(python):
    """`pythonX.Y -m venv` fails where that Python is missing: uv and pyenv get it, each named with the version."""
    steps = post_gen_project.next_steps({**GOOD, "python_version": python})
    assert f"python{python} -m venv .venv" in steps
    assert f"uv venv --seed --python {python} .venv" in steps
    assert f"pyenv install {python}" in steps
    floor = locks.glibc_floor(python)
    assert (f"glibc {floor}" in steps) == (floor != locks.GLIBC_FLOOR), "a newer glibc is named where one is needed"


def test_the_hook_knows_which_pythons_need_a_newer_glibc():
    newer = {python: glibc for python, (glibc, _) in locks.PYTHON_GLIBC.items()}
    assert newer == post_gen_project.NEWER_GLIBC


def test_cruft_comparison_renders_are_recognised(tmp_path):
    """cruft update and diff render the template into tempfile's folders, running the hooks there: no next steps."""
    with tempfile.TemporaryDirectory() as cruft_folder:
        project = Path(cruft_folder) / "my-service"
        assert post_gen_project.rendered_for_comparison({**GOOD, "_commit": "abc"}, project)
        assert not post_gen_project.rendered_for_comparison(GOOD, project), "plain cookiecutter: no cruft commit"
    # cruft create and cookiecutter write where the user asked, here a folder of pytest's.
    assert not post_gen_project.rendered_for_comparison({**GOOD, "_commit": "abc"}, tmp_path / "my-service")


@pytest.mark.parametrize("plan", ["free", "trial", "hobby", "pro"])
def test_plan_prompts_give_cpu_then_memory(plan):
    prompt = TEMPLATE["__prompts__"]["railway_plan"][plan]
    assert re.search(r"\b[\d.]+ vCPU / [\d.]+ GB\b", prompt), prompt
