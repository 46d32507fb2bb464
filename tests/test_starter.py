"""starter/: never stale, and correct with only what a Railway template carries.

A template deploy runs no railway.ts: Railpack builds the folder (`pip install -r requirements.txt`
with the Python in .python-version) and starts it with its default command, with the template's
variables. These tests do the same, and expect Railway's healthcheck to pass, the plan's cluster
to run, and SIGTERM to drain within the draining time the variables set.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

from . import starter
from .support import PLANS, ROOT, missing, railpack_venv

TEMPLATE_SETTINGS = json.loads((starter.STARTER / "railway-template.json").read_text())
# Railway's healthcheck requests carry this Host (deployments/healthchecks.md).
HEALTHCHECK_HOST = "healthcheck.railway.app"


def test_starter_is_a_fresh_render(tmp_path):
    """Byte for byte what `make starter` renders now: a template change without `make starter` fails here."""
    if not starter.ANSWERS.exists():
        pytest.skip("starter.yaml was removed: starter/ is edited by hand")
    fresh = starter.files(starter.render(tmp_path))
    shipped = starter.files(starter.STARTER)
    assert sorted(shipped) == sorted(fresh), "starter/ has other files than a fresh render: run `make starter`"
    stale = [name for name in fresh if fresh[name] != shipped[name]]
    assert stale == [], f"starter/ differs from a fresh render in {stale}: run `make starter`"


def test_template_settings_are_railpacks_defaults_and_the_plan():
    """The data a template carries: Railpack's default start, the readiness check, the plan's deploy timings."""
    plan = PLANS[TEMPLATE_SETTINGS["variables"]["RAILWAY_PLAN"]]
    variables = TEMPLATE_SETTINGS["variables"]
    assert TEMPLATE_SETTINGS["startCommand"] == "gunicorn --bind 0.0.0.0:${PORT:-8000} main:app"
    assert TEMPLATE_SETTINGS["healthcheckPath"] == "/health/ready"
    assert int(variables["RAILWAY_DEPLOYMENT_DRAINING_SECONDS"]) > plan["shutdown_delay"] + plan["graceful_timeout"]
    assert variables["RAILWAY_DEPLOYMENT_OVERLAP_SECONDS"] == str(plan["overlap_seconds"])
    assert variables["REDIS_URL"] == "${{Redis.REDIS_URL}}"


@pytest.mark.parametrize(
    "readme", [starter.STARTER / "README.md", ROOT / "README.md"], ids=["starter README", "template README"]
)
def test_readme_table_shows_the_template_settings(readme):
    """Both READMEs list every template setting with the value railway-template.json holds."""
    text = readme.read_text()
    rows = {
        "start command": TEMPLATE_SETTINGS["startCommand"],
        "healthcheck path": TEMPLATE_SETTINGS["healthcheckPath"],
        **TEMPLATE_SETTINGS["variables"],
    }
    for name, value in rows.items():
        assert re.search(rf"^ *\| `?{re.escape(name)}`? \| `{re.escape(value)}` \|", text, re.MULTILINE), (
            f"{readme.name} lacks the row `{name}` = `{value}`"
        )


@pytest.fixture
def redis_url(tmp_path):
    """A Redis for the `${{Redis.REDIS_URL}}` reference, as Railway's Redis service would resolve it."""
    if not shutil.which("redis-server"):
        missing("needs redis-server: install it (e.g. `apt-get install redis-server`) or run `make test`")
    port = _free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_starter_deploys_as_a_railway_template_does(tmp_path, redis_url):
    """Railpack's build and start, the template's variables: healthy, clustered, drained on SIGTERM."""
    app = tmp_path / "app"
    shutil.copytree(starter.STARTER, app, ignore=shutil.ignore_patterns(*starter.NOT_SHIPPED))
    venv = railpack_venv(app)
    port = _free_port()
    variables = {**TEMPLATE_SETTINGS["variables"], "REDIS_URL": redis_url}
    env = {
        "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "XDG_RUNTIME_DIR": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
        "PORT": str(port),
        "RAILWAY_ENVIRONMENT_NAME": "production",
        "RAILWAY_SERVICE_NAME": TEMPLATE_SETTINGS["service"],
        **variables,
    }
    server = subprocess.Popen(
        ["/bin/bash", "-c", TEMPLATE_SETTINGS["startCommand"]],
        cwd=app,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        timeout = int(variables["RAILWAY_HEALTHCHECK_TIMEOUT_SEC"])
        status, _ = _poll(port, TEMPLATE_SETTINGS["healthcheckPath"], timeout, want=lambda status, _: status == 200)
        assert status == 200, "the healthcheck never passed"
        # Every worker the plan sizes is up (the cluster: more than one on a clustering plan).
        _, health = _poll(port, "/health", 60, want=lambda _, body: _workers(body)[0] == _workers(body)[1])
        live, configured = _workers(health)
        assert PLANS[variables["RAILWAY_PLAN"]]["clustering"] and configured > 1 and live == configured, health
        started = time.monotonic()
        os.kill(server.pid, signal.SIGTERM)
        draining = int(variables["RAILWAY_DEPLOYMENT_DRAINING_SECONDS"])
        output = server.communicate(timeout=draining + 30)[0].decode()
        took = time.monotonic() - started
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    assert server.returncode == 0, output
    assert took < draining, f"drained in {took:.1f}s, past the {draining}s Railway waits before SIGKILL"


def _workers(health: dict) -> tuple[int, int]:
    [check] = health["checks"]["cluster:workers"]
    return check["observedValue"], check["configured"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _poll(port: int, path: str, deadline: float, want) -> tuple[int | None, dict]:
    """GET `path` as Railway's healthcheck does until `want(status, body)`; the last answer."""
    end = time.monotonic() + deadline
    answer: tuple[int | None, dict] = (None, {})
    while time.monotonic() < end:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Host": HEALTHCHECK_HOST})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                answer = (response.status, json.loads(response.read()))
        except urllib.error.HTTPError as error:
            answer = (error.code, {})
        except OSError:
            pass
        if answer[0] is not None and want(*answer):
            return answer
        time.sleep(0.1)
    return answer
