"""Check every answer before anything is written; refuse with one line per bad answer."""

import json
import keyword
import re
import sys

# Rendered by cookiecutter; a raw string, so quotes and backslashes in answers stay data.
ANSWERS_JSON = r"""{{ cookiecutter | tojson }}"""

PLANS = ("free", "trial", "hobby", "pro", "enterprise")
WORKER_CLASSES = ("gthread", "gevent", "sync")
SERVERS = ("gunicorn", "granian")
PYTHON_VERSIONS = ("3.11", "3.12", "3.13", "3.14", "3.15")
DATABASES = ("none", "postgres")
TRACING = ("no", "yes")
# A Railway service name and a folder name: lowercase words joined by dashes.
PROJECT_PATTERN = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
PROJECT_MAX_LENGTH = 63
# GitHub's owner/name, then an optional folder inside the repository (Railway's root directory).
GITHUB_REPOSITORY_PATTERN = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}(?:/(?!\.{1,2}(?:/|$))[A-Za-z0-9._-]{1,100}){1,}$"
)
# Import names the generated project already uses (its locked packages, with
# the test tools, and its own modules): a package named like one would shadow it.
TAKEN_NAMES = {
    "flask", "werkzeug", "jinja2", "click", "itsdangerous", "markupsafe", "blinker",
    "gunicorn", "granian", "packaging", "psutil", "pythonjsonlogger", "orjson", "limits", "deprecated", "wrapt",
    "typing_extensions", "redis", "async_timeout", "prometheus_client", "sentry_sdk", "certifi", "urllib3",
    "gevent", "greenlet", "zope", "cffi", "pycparser",
    "sqlalchemy", "psycopg", "psycopg_binary", "alembic", "mako", "tzdata",
    "opentelemetry", "google", "requests", "charset_normalizer", "idna",
    "pytest", "_pytest", "py", "pluggy", "iniconfig", "pygments", "colorama", "ruff", "uv", "_cffi_backend",
    "main", "tests", "test", "app", "railkit", "migrations",
}  # fmt: skip


NOTHING_WRITTEN = (
    "Nothing was written. Fix the answers above and run cookiecutter again; its traceback below adds nothing."
)


def problems(answers: dict) -> list[str]:
    """One line per bad answer: `ERROR: <variable> '<value>' ...: <how to fix>`."""
    found = []

    def refuse(variable, why, fix):
        found.append(f"ERROR: {variable} {as_typed(answers.get(variable))!r} {why}: {fix}")

    for variable in ("project_name", "description"):
        text = str(answers.get(variable, ""))
        if not text.strip() or not text.isprintable():
            refuse(variable, "is empty or holds control characters", "give one line of text, e.g. 'My Service'")
    project = str(answers.get("project", ""))
    if not PROJECT_PATTERN.match(project) or len(project) > PROJECT_MAX_LENGTH:
        refuse(
            "project",
            "is not a valid folder and Railway service name",
            f"use lowercase letters, digits and single dashes, starting with a letter, at most {PROJECT_MAX_LENGTH}",
        )
    package = str(answers.get("package", ""))
    if not package.isidentifier() or keyword.iskeyword(package) or package != package.lower():
        refuse("package", "is not a valid Python import name", "use lowercase letters, digits and underscores")
    elif package in TAKEN_NAMES or package in sys.stdlib_module_names:
        refuse("package", "would shadow a module the project imports", f"choose another name, e.g. '{package}_service'")
    for variable, choices in (
        ("railway_plan", PLANS),
        ("worker_class", WORKER_CLASSES),
        ("python_version", PYTHON_VERSIONS),
        ("database", DATABASES),
        ("use_tracing", TRACING),
    ):
        if answers.get(variable) not in choices:
            refuse(variable, "is not offered", f"choose one of {', '.join(choices)}")
    for variable in ("use_redis", "use_docker"):
        if not isinstance(answers.get(variable), bool):
            refuse(variable, "is not a yes/no answer", "answer yes or no (true or false)")
    repository = str(answers.get("github_repository", ""))
    if repository and not GITHUB_REPOSITORY_PATTERN.match(repository):
        refuse(
            "github_repository",
            "is not a GitHub repository",
            "give owner/name (e.g. acme/shop), or owner/name/folder for a project in a folder, or leave it empty",
        )
    # Asked after worker_class; an answer file from before it was offered means gunicorn.
    server = answers.get("server", "gunicorn")
    if server not in SERVERS:
        refuse("server", "is not offered", f"choose one of {', '.join(SERVERS)}")
    elif server == "granian" and answers.get("worker_class") == "gevent":
        refuse("server", "cannot serve gevent workers", "choose worker_class gthread or sync, or server gunicorn")
    plan = answers.get("_plans", {}).get(answers.get("railway_plan"))
    if plan and answers.get("use_redis") is False and _production_replicas(plan) > 1:
        refuse(
            "use_redis",
            f"leaves the {answers['railway_plan']} plan's {_production_replicas(plan)} replicas without a shared store",
            "answer use_redis=yes so rate limits hold across replicas, or choose railway_plan free or trial",
        )
    return found


def as_typed(answer) -> str:
    """An answer as the user gave it: cookiecutter turns yes/no into True/False before the hook runs."""
    if isinstance(answer, bool):
        return "yes" if answer else "no"
    return str(answer)


def _production_replicas(plan: dict) -> int:
    replicas = plan["replicas"]["production"]
    return sum(replicas.values()) if isinstance(replicas, dict) else replicas


def main() -> int:
    found = problems(json.loads(ANSWERS_JSON))
    for line in found:
        print(line, file=sys.stderr)
    if found:
        # cookiecutter follows a failed hook with its own traceback, which no hook can hide.
        print(NOTHING_WRITTEN, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
