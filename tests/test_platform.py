"""The platform's own suite (railkit/railkit_tests), run once per project variant whose platform behaviour differs.

The default project (gthread, Python 3.14) runs all of it; the others leave out what does not
depend on the worker class. The gevent project runs on Python 3.15 with Postgres and traces, so
the database's tests meet gevent's patched sockets and the tracing tests meet both; a gthread
project with traces runs the tracing tests. The granian project runs its server's own tests and
the rest that depends on the server.

A variant's suite is dealt into shards (the suite's `--shard K/N`), so `make test`'s workers share every
suite out evenly instead of one worker running whole suites while the other waits.
"""

import pytest

from .support import SKIPS, run_platform_tests

# The sync and gevent projects leave out gunicorn's master tests too: the default project runs them.
EVERY_GUNICORN_CLASS = ("-m", "not same_for_every_worker_class and not same_for_every_gunicorn_worker_class")
VARIANTS = {
    "gthread": ({}, ()),
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
    "gthread-tracing": ({"use_tracing": "yes"}, ("-m", "use_tracing")),
    "sync": ({"railway_plan": "trial", "worker_class": "sync", "python_version": "3.11"}, EVERY_GUNICORN_CLASS),
    # What depends on the server: its own tests, the hostile clients, the real clusters (the request layers
    # are the same WSGI code on both servers).
    "granian": ({"server": "granian"}, ("-m", "not same_for_every_worker_class")),
}


# Shards per variant, about one per minute of the variant's suite run alone.
SHARDS = {"gevent-postgres": 7, "granian": 5, "gthread": 5, "sync": 4, "gthread-tracing": 1}
RUNS = [(variant, f"{shard}/{SHARDS[variant]}") for variant in SHARDS for shard in range(1, SHARDS[variant] + 1)]


@pytest.mark.parametrize(("variant", "shard"), RUNS, ids=[f"{variant}-{shard}" for variant, shard in RUNS])
def test_the_platform_suite_passes_on(cookies, variant, shard):
    context, options = VARIANTS[variant]
    result = cookies.bake(extra_context=context)
    assert result.exception is None, result.exception
    outcome = run_platform_tests(result.project_path, *options, "--shard", shard)
    failures = outcome.stdout.find("= FAILURES =")
    assert outcome.returncode == 0, outcome.stdout[failures:][:60000] + outcome.stdout[-3000:] + outcome.stderr[-5000:]
    assert " passed" in outcome.stdout and not SKIPS.search(outcome.stdout), outcome.stdout[-3000:]
