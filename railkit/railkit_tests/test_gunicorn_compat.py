"""The guard on gunicorn's internals: break each one in a real start, and see the refusal."""

import json
import subprocess
import sys

import pytest

from railkit import project
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
import gunicorn.http
from gunicorn import arbiter, sock, util
from gunicorn.http import body, message, parser, unreader, wsgi
from gunicorn.http2 import negotiation
from gunicorn.workers import base, gthread, sync
{extra_import}
owner = {owner}
def broken(*args, **kwargs):
    pass
setattr(owner, {attribute!r}, broken)
sys.argv = ["gunicorn", "railkit_tests.plain_wsgi:app"]
from gunicorn.app.wsgiapp import run
run(prog="gunicorn")
"""
OWNERS = {
    "Arbiter": "arbiter.Arbiter",
    "BaseSocket": "sock.BaseSocket",
    "Worker": "base.Worker",
    "Message": "message.Message",
    "Request": "message.Request",
    "message": "message",
    "HeaderPolicy": "message.HeaderPolicy",
    "Response": "wsgi.Response",
    "wsgi": "wsgi",
    "util": "util",
    "gunicorn.arbiter": "arbiter",
    "gunicorn.http": "gunicorn.http",
    "Parser": "parser.Parser",
    "RequestParser": "parser.RequestParser",
    "SocketUnreader": "unreader.SocketUnreader",
    "Unreader": "unreader.Unreader",
    "ChunkedReader": "body.ChunkedReader",
    "Body": "body.Body",
    "LengthReader": "body.LengthReader",
    "EOFReader": "body.EOFReader",
    "negotiation": "negotiation",
    "TConn": "gthread.TConn",
    "ThreadWorker": "gthread.ThreadWorker",
    "gthread": "gthread",
    "SyncWorker": "sync.SyncWorker",
    "GeventWorker": "ggevent.GeventWorker",
    "monkey": "monkey",
}

# Owners only gevent projects have.
GEVENT_IMPORTS = {"ggevent": "from gunicorn.workers import ggevent", "monkey": "from gevent import monkey"}


def test_this_gunicorn_has_every_internal():
    assert missing_internals(project.WORKER_CLASS) == []


def test_a_new_optional_parameter_is_no_change_but_a_new_required_one_is():
    class Owner:
        def grew_an_option(self, conn, deadline=None): ...

        def grew_a_requirement(self, conn, deadline): ...

    assert Internal("grew_an_option", Owner, "grew_an_option", ("self", "conn")).problem() is None
    assert "takes (self, conn, deadline)" in Internal("grew", Owner, "grew_a_requirement", ("self", "conn")).problem()


# gunicorn's own start already fails without its os module: nothing to guard there.
BREAKABLE = [
    internal
    for internal in (*INTERNALS, *gevent_internals())
    if internal.name not in ("gunicorn.arbiter.os", "Arbiter.run")  # nor without its loop
]


@pytest.mark.cluster
@pytest.mark.parametrize("internal", BREAKABLE, ids=[internal.name for internal in BREAKABLE])
def test_a_changed_internal_refuses_the_start(internal):
    owner = OWNERS[internal.name.rsplit(".", 1)[0]]
    extra_import = GEVENT_IMPORTS.get(owner.split(".")[0], "")
    script = BREAK_AND_START.format(owner=owner, attribute=internal.attribute, extra_import=extra_import)
    env = {"PATH": "/usr/bin:/bin", "PORT": str(free_port()), "WEB_CONCURRENCY": "1", "PYTHONPATH": str(SUITE.parent)}
    finished = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert finished.returncode == EXIT_INCOMPATIBLE, finished.stdout + finished.stderr
    [refusal] = [json.loads(line) for line in finished.stdout.splitlines() if json.loads(line)["level"] == "error"]
    assert refusal["gunicorn_version"]
    assert any(internal.name in problem for problem in refusal["missing"])
