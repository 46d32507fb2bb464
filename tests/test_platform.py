"""The platform's own suite (railkit/railkit_tests), run once per project variant whose platform behaviour differs.

The default project (gthread) runs all of it; the others leave out what does not depend on the
worker class. The gevent project has Postgres, so the database's tests meet gevent's patched sockets.
The granian project runs its server's own tests and every test that starts a real cluster.
"""

import pytest

from .support import SKIPS, run_platform_tests

VARIANTS = {
    "gthread": ({}, ()),
    "gevent-postgres": (
        {"railway_plan": "pro", "worker_class": "gevent", "python_version": "3.14", "database": "postgres"},
        ("-m", "not same_for_every_worker_class"),
    ),
    "sync": (
        {"railway_plan": "trial", "worker_class": "sync", "python_version": "3.11"},
        ("-m", "not same_for_every_worker_class"),
    ),
    # The server's own tests and every test of a running cluster (the request layers are the same code).
    "granian": ({"server": "granian"}, ("-m", "not same_for_every_worker_class or cluster")),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_platform_suite_passes_on(cookies, variant):
    context, options = VARIANTS[variant]
    result = cookies.bake(extra_context=context)
    assert result.exception is None, result.exception
    outcome = run_platform_tests(result.project_path, *options)
    assert outcome.returncode == 0, outcome.stdout[-20000:] + outcome.stderr[-5000:]
    assert " passed" in outcome.stdout and not SKIPS.search(outcome.stdout), outcome.stdout[-3000:]
