"""The platform's own suite (railkit/railkit_tests), run once per project variant whose platform behaviour differs.

The default project (gthread, Python 3.14) runs all of it; the others leave out what does not
depend on the worker class. The gevent project runs on Python 3.15 with Postgres and traces, so
the database's tests meet gevent's patched sockets and the tracing tests meet both; a gthread
project with traces runs the tracing tests. The granian project runs its server's own tests and
the rest that depends on the server.

A variant's suite is dealt into shards (the suite's `--shard K/N`), so `make test`'s workers share every
suite out evenly. Its `load` tests (crowds and floods) run apart, every variant's on one worker, one
after another: two crowds at once on two cores would measure each other.
"""

import pytest

from .support import SKIPS, run_platform_tests

EVERY_GUNICORN_CLASS = "not same_for_every_worker_class and not same_for_every_gunicorn_worker_class"
# Answers, and the tests that run, per variant (None: all of them).
VARIANTS = {
    "gthread": ({}, None),
    "gevent-postgres": (
        {
            "railway_plan": "pro",
            "worker_class": "gevent",
            "python_version": "3.15",
            "database": "postgres",
            "use_tracing": "yes",
        },
        EVERY_GUNICORN_CLASS,
    ),
    "gthread-tracing": ({"use_tracing": "yes"}, "use_tracing"),
    "sync": ({"railway_plan": "trial", "worker_class": "sync", "python_version": "3.11"}, EVERY_GUNICORN_CLASS),
    # What depends on the server: its own tests, the hostile clients, the real clusters (the request layers
    # are the same WSGI code on both servers), gunicorn's master tests against granian's.
    "granian": ({"server": "granian"}, "not same_for_every_worker_class"),
}

# Shards of each variant's other tests, about one per minute of them run alone.
SHARDS = {"gevent-postgres": 5, "gthread": 4, "granian": 3, "sync": 3, "gthread-tracing": 1}
# The load tests' order on their worker: the heaviest last, when the other workers are finishing.
LOADED = ("sync", "granian", "gthread", "gevent-postgres")


def _runs():
    for variant in LOADED:
        yield pytest.param(variant, "load", id=f"{variant}-load", marks=pytest.mark.xdist_group("load"))
    for variant, shards in SHARDS.items():
        for shard in range(1, shards + 1):
            yield pytest.param(variant, f"{shard}/{shards}", id=f"{variant}-{shard}/{shards}")


@pytest.mark.parametrize(("variant", "shard"), list(_runs()))
def test_the_platform_suite_passes_on(cookies, variant, shard):
    context, selected = VARIANTS[variant]
    part = "load" if shard == "load" else "not load"
    selected = f"({selected}) and {part}" if selected else part
    result = cookies.bake(extra_context=context)
    assert result.exception is None, result.exception
    shard_options = () if shard == "load" else ("--shard", shard)
    outcome = run_platform_tests(result.project_path, "-m", selected, *shard_options)
    failures = outcome.stdout.find("= FAILURES =")
    assert outcome.returncode == 0, outcome.stdout[failures:][:30000] + outcome.stdout[-3000:] + outcome.stderr[-5000:]
    assert " passed" in outcome.stdout and not SKIPS.search(outcome.stdout), outcome.stdout[-3000:]
