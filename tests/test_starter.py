"""starter/: never stale, and correct with only what a Railway template carries.

A template deploy runs no railway.ts and pins no builder. Railway builds a Dockerfile at the root
of the folder when there is one (builds/dockerfiles.md), and then runs the start command in exec
form, with no shell to expand variables (deployments/start-command.md); otherwise Railpack builds
it (`pip install -r requirements.txt` with the Python in .python-version) and runs the start command
in a shell: its image's entrypoint is `/bin/bash -c` (railpack's buildkit/convert.go). These tests
follow that rule with the template's variables, and expect Railway's healthcheck to pass on both
address families, the plan's cluster to run, and SIGTERM to drain within the draining time the
variables set.
"""

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from . import starter
from .support import PLANS, ROOT, missing, railpack_venv

TEMPLATE_SETTINGS = json.loads((starter.STARTER / "railway-template.json").read_text())
# Railway's healthcheck requests carry this Host (deployments/healthchecks.md).
HEALTHCHECK_HOST = "healthcheck.railway.app"
# The entrypoint of a Railpack image: the start command is its one argument.
RAILPACK_SHELL = ["/bin/bash", "-c"]


def test_starter_is_a_fresh_render(tmp_path):
    """Byte for byte what `make starter` renders now: a template change without `make starter` fails here."""
    if not starter.ANSWERS.exists():
        pytest.skip("starter.yaml was removed: starter/ is edited by hand")
    fresh = starter.files(starter.render(tmp_path))
    shipped = starter.files(starter.STARTER)
    assert sorted(shipped) == sorted(fresh), "starter/ has other files than a fresh render: run `make starter`"
    stale = [name for name in fresh if fresh[name] != shipped[name]]
    assert stale == [], f"starter/ differs from a fresh render in {stale}: run `make starter`"
    # The record `make starter` checks before it renders again: what it wrote last.
    assert starter.local_changes() == [], "starter.sha256 does not list starter/'s files: run `make starter`"


def railway_runs(start_command: str, project: Path, settings: dict) -> list[str]:
    """The start command as Railway runs it: exec form on a Dockerfile build, in a shell under Railpack.

    A root Dockerfile means a Dockerfile build unless the service pins a builder, which a
    template cannot carry (templates/create.md lists no builder setting).
    """
    if (project / "Dockerfile").exists() and not settings.get("builder"):
        return shlex.split(start_command)
    return [*RAILPACK_SHELL, start_command]


def test_template_settings_are_the_start_command_and_the_plan():
    """The data a template carries: a start command with no variables to expand, the readiness check, the plan."""
    plan = PLANS[TEMPLATE_SETTINGS["variables"]["RAILWAY_PLAN"]]
    variables = TEMPLATE_SETTINGS["variables"]
    # Exec form expands nothing: `${PORT...}` would reach gunicorn literally, so nothing may need expanding.
    assert "$" not in TEMPLATE_SETTINGS["startCommand"]
    assert TEMPLATE_SETTINGS["startCommand"] == "python -m railkit.cluster serve"
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


def _deployed(tmp_path: Path) -> tuple[Path, Path]:
    """starter/ as a deploy gets it: its shipped files, and a venv built as Railpack builds it."""
    app = tmp_path / "app"
    shutil.copytree(starter.STARTER, app, ignore=shutil.ignore_patterns(*starter.NOT_SHIPPED))
    return app, railpack_venv(app)


def _railway_env(tmp_path: Path, venv: Path, port: int, variables: dict) -> dict:
    return {
        "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "XDG_RUNTIME_DIR": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
        "PORT": str(port),
        "RAILWAY_ENVIRONMENT_NAME": "production",
        "RAILWAY_SERVICE_NAME": TEMPLATE_SETTINGS["service"],
        **variables,
    }


def _assert_healthy_on_both_families(port: int) -> None:
    """Railway's healthcheck gets 200 over IPv4 and over IPv6: the cluster listens on 0.0.0.0 and [::]."""
    if not socket.has_ipv6 or not _ipv6_loopback():
        missing("needs IPv6 on the loopback (::1) to check the [::] listener")
    for host in ("127.0.0.1", "[::1]"):
        status, _ = _poll(port, TEMPLATE_SETTINGS["healthcheckPath"], 30, lambda status, _: status == 200, host=host)
        assert status == 200, f"Railway's healthcheck over {host} got {status}"


@pytest.mark.parametrize("form", ["exec", "shell"])
def test_start_command_works_with_and_without_a_shell(tmp_path, form):
    """Exec form (a Dockerfile build, e.g. with RAILWAY_DOCKERFILE_PATH) or a shell (Railpack): the same server."""
    app, venv = _deployed(tmp_path)
    port = _free_port()
    variables = {name: value for name, value in TEMPLATE_SETTINGS["variables"].items() if name != "REDIS_URL"}
    command = TEMPLATE_SETTINGS["startCommand"]
    argv = shlex.split(command) if form == "exec" else [*RAILPACK_SHELL, command]
    with _started(argv, app, _railway_env(tmp_path, venv, port, variables)) as server:
        _assert_healthy_on_both_families(port)
        os.kill(server.pid, signal.SIGTERM)
        output = server.communicate(timeout=60)[0].decode()
    assert server.returncode == 0, output


def test_starter_deploys_as_a_railway_template_does(tmp_path, redis_url):
    """Built and started as Railway picks for this folder, with the template's variables: healthy on both
    address families, clustered, drained on SIGTERM."""
    app, venv = _deployed(tmp_path)
    port = _free_port()
    variables = {**TEMPLATE_SETTINGS["variables"], "REDIS_URL": redis_url}
    env = _railway_env(tmp_path, venv, port, variables)
    server = subprocess.Popen(
        railway_runs(TEMPLATE_SETTINGS["startCommand"], app, TEMPLATE_SETTINGS),
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
        _assert_healthy_on_both_families(port)
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


class _started:
    """A server process in its own session, killed with its children if the test fails before it stops."""

    def __init__(self, argv: list[str], cwd: Path, env: dict):
        self.process = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )

    def __enter__(self) -> subprocess.Popen:
        return self.process

    def __exit__(self, *_) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.communicate()


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


def _workers(health: dict) -> tuple[int, int]:
    [check] = health["checks"]["cluster:workers"]
    return check["observedValue"], check["configured"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _poll(port: int, path: str, deadline: float, want, host: str = "127.0.0.1") -> tuple[int | None, dict]:
    """GET `path` as Railway's healthcheck does until `want(status, body)`; the last answer."""
    end = time.monotonic() + deadline
    answer: tuple[int | None, dict] = (None, {})
    while time.monotonic() < end:
        request = urllib.request.Request(f"http://{host}:{port}{path}", headers={"Host": HEALTHCHECK_HOST})
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
