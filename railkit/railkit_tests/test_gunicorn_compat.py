"""The guard on gunicorn's internals: each one, changed, is named; and a real start with one changed is refused."""

import json
import subprocess
import sys

import pytest

from railkit.cluster.gunicorn_compat import (
    EXIT_INCOMPATIBLE,
    INTERNALS,
    Internal,
    gevent_internals,
    missing_internals,
)

from .servers import PROJECT_ROOT, SUITE, free_port

# Runs gunicorn in-process after breaking one internal, the way a changed gunicorn would look.
BREAK_AND_START = """
import sys
from gunicorn import arbiter, util
from gunicorn.workers import gthread
{extra_import}
def broken(*args, **kwargs):
    pass
setattr({owner}, {attribute!r}, broken)
sys.argv = ["gunicorn", "railkit_tests.plain_wsgi:app"]
from gunicorn.app.wsgiapp import run
run(prog="gunicorn")
"""
# A real start with one internal of each kind changed: a method, a module's function, a constant, and (where
# gevent is installed) gevent's own. The start's check is the same code for all of them; which internals it
# knows is the in-process test below.
REAL_STARTS = {
    "Arbiter.stop": ("arbiter.Arbiter", ""),
    "util.write": ("util", ""),
    "gthread.STOP_KEEPALIVE_LINGER": ("gthread", ""),
    "monkey.patch_module": ("monkey", "from gevent import monkey"),
}
GEVENT_INTERNALS = gevent_internals()
EVERY_INTERNAL = (*INTERNALS, *GEVENT_INTERNALS)


def _broken(*args, **kwargs):
    pass


def test_this_gunicorn_has_every_internal():
    assert missing_internals("gevent") == []


@pytest.mark.parametrize("internal", EVERY_INTERNAL, ids=[internal.name for internal in EVERY_INTERNAL])
def test_each_internal_changed_is_named(internal, monkeypatch):
    monkeypatch.setattr(internal.owner, internal.attribute, _broken)
    assert any(internal.name in problem for problem in missing_internals("gevent"))


def test_a_new_optional_parameter_is_no_change_but_a_new_required_one_is():
    class Owner:
        def grew_an_option(self, conn, deadline=None): ...

        def grew_a_requirement(self, conn, deadline): ...

    assert Internal("grew_an_option", Owner, "grew_an_option", ("self", "conn")).problem() is None
    assert "takes (self, conn, deadline)" in Internal("grew", Owner, "grew_a_requirement", ("self", "conn")).problem()


# gunicorn's own start and check are the same under every worker class: the default project breaks them; gevent's
# projects break gevent's.
REAL_BREAKS = [
    pytest.param(
        internal,
        id=internal.name,
        marks=pytest.mark.worker_class("gevent")
        if internal in GEVENT_INTERNALS
        else pytest.mark.same_for_every_gunicorn_worker_class,
    )
    for internal in EVERY_INTERNAL
    if internal.name in REAL_STARTS
]


@pytest.mark.cluster
@pytest.mark.parametrize("internal", REAL_BREAKS)
def test_a_changed_internal_refuses_the_start(internal):
    owner, extra_import = REAL_STARTS[internal.name]
    script = BREAK_AND_START.format(owner=owner, attribute=internal.attribute, extra_import=extra_import)
    env = {"PATH": "/usr/bin:/bin", "PORT": str(free_port()), "WEB_CONCURRENCY": "1", "PYTHONPATH": str(SUITE.parent)}
    finished = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert finished.returncode == EXIT_INCOMPATIBLE, finished.stdout + finished.stderr
    [refusal] = [json.loads(line) for line in finished.stdout.splitlines() if json.loads(line)["level"] == "error"]
    assert refusal["gunicorn_version"]
    assert any(internal.name in problem for problem in refusal["missing"])
