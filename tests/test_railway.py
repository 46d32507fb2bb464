"""Every generated .railway/railway.ts, checked by Railway's own SDK against the plan table.

tsc (strict) type-checks each file against the `railway` package's types; tsx
evaluates it with the SDK's createRailwayContext for production and staging,
and the normalized desired state is compared with cookiecutter.json's plans.
Then the declared start command is run and the declared healthcheck must pass.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from .support import PLAN_NAMES, PLANS, ROOT, TEMPLATE, missing, production_replicas, project_venv

# One pytest-xdist worker runs the module, so its configurations are made and type-checked once.
pytestmark = pytest.mark.xdist_group("railway")

SDK = ROOT / "tests" / "railway"
# Inside the SDK's folder, where its node_modules resolve; one folder per pytest-xdist worker.
WORK = SDK / "work" / os.environ.get("PYTEST_XDIST_WORKER", "main")
MB = 2**20
# Railway caps these on the plans that cannot pay for more (restart-policy.md).
CAPPED_PLANS = ("free", "trial")
# The github_repository answer: owner/name, then the folder Railway builds (its root directory).
SOURCE_REPOSITORY = "acme/shop/services/api"
# The Redis service's one name: railway.ts declares it, the template's REDIS_URL refers to it.
REDIS = TEMPLATE["_railway_template"]["redis_service"]
POSTGRES = TEMPLATE["_railway_template"]["postgres_service"]
# Plans whose railway.ts is also checked with Postgres: one replica, several, several regions.
DATABASE_PLANS = ("free", "hobby", "pro")


@pytest.fixture(scope="module")
def railway_configs(cookies_session):
    """Each plan's railway.ts (with and without Redis where allowed), type-checked together."""
    if not (SDK / "node_modules" / ".bin" / "tsc").exists():
        missing("Railway's SDK is not installed: run `make test`, which installs it with npm ci")
    shutil.rmtree(WORK, ignore_errors=True)
    configs = {}
    for plan in PLAN_NAMES:
        for use_redis in (True, False):
            if not _redis_allowed(plan, use_redis):
                continue
            result = cookies_session.bake(extra_context={"railway_plan": plan, "use_redis": use_redis})
            assert result.exception is None, result.exception
            target = WORK / f"{plan}-redis-{use_redis}" / "railway.ts"
            target.parent.mkdir(parents=True)
            shutil.copy(result.project_path / ".railway" / "railway.ts", target)
            configs[(plan, use_redis)] = (target, result.project_path)
    # Projects with Postgres: railway.ts hands the database's URLs and the replica count to the service.
    for plan in DATABASE_PLANS:
        result = cookies_session.bake(extra_context={"railway_plan": plan, "database": "postgres"})
        assert result.exception is None, result.exception
        target = WORK / f"{plan}-postgres" / "railway.ts"
        target.parent.mkdir(parents=True)
        shutil.copy(result.project_path / ".railway" / "railway.ts", target)
        configs[(plan, "postgres")] = (target, result.project_path)
    # A project that names its GitHub repository, in a folder of it (as starter/ does).
    result = cookies_session.bake(extra_context={"github_repository": SOURCE_REPOSITORY})
    assert result.exception is None, result.exception
    target = WORK / "github-source" / "railway.ts"
    target.parent.mkdir(parents=True)
    shutil.copy(result.project_path / ".railway" / "railway.ts", target)
    configs["github-source"] = (target, result.project_path)
    tsconfig = {
        "compilerOptions": {
            "strict": True,
            "noEmit": True,
            "target": "ES2022",
            "module": "NodeNext",
            "moduleResolution": "NodeNext",
            "types": [],
        },
        "files": [str(target) for target, _ in configs.values()],
    }
    (WORK / "tsconfig.json").write_text(json.dumps(tsconfig))
    checked = subprocess.run(
        [str(SDK / "node_modules" / ".bin" / "tsc"), "-p", str(WORK / "tsconfig.json")], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    return configs


def evaluate(config: Path) -> dict:
    """The desired state the SDK computes for production and staging."""
    output = subprocess.run(
        [str(SDK / "node_modules" / ".bin" / "tsx"), str(SDK / "evaluate.mts"), str(config), "production", "staging"],
        capture_output=True,
        text=True,
        check=True,
        cwd=SDK,
    ).stdout
    return json.loads(output)


def _web(state: dict) -> dict:
    [web] = [resource for resource in state["resources"] if resource["type"] == "service"]
    return web


def _replicas(deploy: dict) -> int:
    if "multiRegionConfig" in deploy:
        return sum(region["numReplicas"] for region in deploy["multiRegionConfig"].values())
    return deploy["numReplicas"]


def _literal(web: dict, name: str) -> str:
    variable = web["variables"][name]
    assert variable["type"] == "literal"
    return variable["value"]


def _redis_allowed(plan: str, use_redis: bool) -> bool:
    """Plans with several replicas must share Redis, and one process has no use for it; the hook refuses both."""
    spec = PLANS[plan]
    single_process = not spec["clustering"] and production_replicas(spec) == 1
    return not single_process if use_redis else production_replicas(spec) == 1


CASES = [(plan, use_redis) for plan in PLAN_NAMES for use_redis in (True, False) if _redis_allowed(plan, use_redis)]


@pytest.mark.parametrize(("plan", "use_redis"), CASES, ids=[f"{p}-redis:{r}" for p, r in CASES])
def test_railway_ts_matches_the_plan_table(railway_configs, plan, use_redis):
    config, _ = railway_configs[(plan, use_redis)]
    states = evaluate(config)
    spec = PLANS[plan]
    for environment, state in states.items():
        web = _web(state)
        deploy = web["deploy"]
        assert deploy["startCommand"] == TEMPLATE["_railway_template"]["start_command"]
        assert deploy["healthcheckPath"] == TEMPLATE["_railway_template"]["healthcheck_path"]
        assert deploy["restartPolicyType"] == spec["restart_policy"]
        assert deploy["restartPolicyMaxRetries"] == spec["restart_retries"]
        # Railway's default of 0 s would SIGKILL requests still in flight: the lame-duck
        # phase and the graceful timeout both fit, with the margin the template table sets.
        margin = TEMPLATE["_railway_template"]["draining_margin_seconds"]
        assert deploy["drainingSeconds"] == spec["shutdown_delay"] + spec["graceful_timeout"] + margin
        assert deploy["overlapSeconds"] == spec["overlap_seconds"]
        limits = deploy["limitOverride"]["containers"]
        assert limits == {"cpu": spec["vcpu"], "memoryBytes": spec["memory_mb"] * MB}
        expected = spec["replicas"][environment]
        assert _replicas(deploy) == (sum(expected.values()) if isinstance(expected, dict) else expected)
        assert _literal(web, "RAILWAY_PLAN") == plan
        assert _literal(web, "ENABLE_CLUSTERING") == str(spec["clustering"]).lower()
        assert _literal(web, "WORKER_MAX_MEMORY_MB") == str(spec["worker_max_memory_mb"])
        assert _literal(web, "RATE_LIMIT") == spec["rate_limit"]
        assert _literal(web, "GRACEFUL_TIMEOUT") == str(spec["graceful_timeout"])
        databases = [resource for resource in state["resources"] if resource["type"] == "database"]
        if use_redis:
            assert [(database["engine"], database["name"]) for database in databases] == [("redis", REDIS)]
            assert web["variables"]["REDIS_URL"] == {
                "type": "reference",
                "resource": databases[0]["address"],
                "output": "REDIS_URL",
            }
        else:
            assert databases == [] and "REDIS_URL" not in web["variables"]


def test_github_repository_becomes_the_service_source(railway_configs):
    """With a repository, Railway builds that repository's folder; without one, railway.ts names no source."""
    for state in evaluate(railway_configs["github-source"][0]).values():
        source = _web(state)["source"]
        assert (source["type"], source["repo"], source["rootDirectory"]) == ("github", "acme/shop", "services/api")
    for state in evaluate(railway_configs[("hobby", True)][0]).values():
        assert "source" not in _web(state)


@pytest.mark.parametrize("plan", PLAN_NAMES)
def test_railway_ts_stays_within_the_plan(railway_configs, plan):
    """Never more replicas, CPU or memory than the plan allows; no ALWAYS or >10 retries on capped plans."""
    spec = PLANS[plan]
    config, _ = railway_configs.get((plan, True)) or railway_configs[(plan, False)]
    for environment, state in evaluate(config).items():
        deploy = _web(state)["deploy"]
        assert 1 <= _replicas(deploy) <= spec["max_replicas"], environment
        limits = deploy["limitOverride"]["containers"]
        assert limits["cpu"] <= spec["max_vcpu"]
        assert limits["memoryBytes"] <= spec["max_memory_mb"] * MB
        if plan in CAPPED_PLANS:
            assert deploy["restartPolicyType"] != "ALWAYS"
            assert deploy["restartPolicyMaxRetries"] <= 10


@pytest.mark.parametrize("plan", PLAN_NAMES)
def test_declared_start_command_passes_the_declared_healthcheck(railway_configs, plan, tmp_path):
    """Run exactly what Railway would run, with the variables railway.ts sets, and poll its healthcheck."""
    # Without Redis where the plan allows it: the healthcheck then needs nothing else.
    config, project = railway_configs.get((plan, False)) or railway_configs[(plan, True)]
    web = _web(evaluate(config)["production"])
    deploy = web["deploy"]
    venv = project_venv(project)
    port = _free_port()
    env = {
        **os.environ,
        **{name: value["value"] for name, value in web["variables"].items() if value["type"] == "literal"},
        "PORT": str(port),
        "PATH": f"{venv / 'bin'}:{os.environ['PATH']}",
        "XDG_RUNTIME_DIR": str(tmp_path),
    }
    env.pop("REDIS_URL", None)
    server = subprocess.Popen(
        deploy["startCommand"].split(),
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        status = _poll(f"http://127.0.0.1:{port}{deploy['healthcheckPath']}", deadline=deploy["healthcheckTimeout"])
        assert status == 200
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        output = server.communicate(timeout=60)[0].decode()
    assert server.returncode == 0, output
    for line in output.splitlines():
        assert {"message", "level"} <= set(json.loads(line))


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _poll(url: str, deadline: float) -> int | None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status
        except OSError:
            time.sleep(0.1)
    return None


def test_the_redis_service_has_one_name_everywhere(cookies):
    """railway.ts's Redis, the template settings' REDIS_URL reference and both READMEs name the same service."""
    project = cookies.bake().project_path
    railway_ts = (project / ".railway" / "railway.ts").read_text()
    assert re.findall(r'\bredis\("([^"]*)"\)', railway_ts) == [REDIS]
    settings = json.loads((project / "railway-template.json").read_text())
    assert settings["variables"]["REDIS_URL"] == f"${{{{{REDIS}.REDIS_URL}}}}"
    for readme in (project / "README.md", ROOT / "README.md"):
        text = readme.read_text()
        assert set(re.findall(r"\$\{\{\s*([^.}]+)\.REDIS_URL\s*\}\}", text)) == {REDIS}, readme
        assert f"a Redis service named `{REDIS}`" in text, readme


def test_one_replica_plans_say_so_plainly(cookies):
    """The free plan's railway.ts: "1 replica", a plain `replicas: 1`, no Redis service."""
    result = cookies.bake(extra_context={"railway_plan": "free", "use_redis": False})
    assert result.exception is None, result.exception
    railway_ts = (result.project_path / ".railway" / "railway.ts").read_text()
    assert "at most 1 replica of" in railway_ts and "1 replicas" not in railway_ts
    assert "replicas: 1," in railway_ts and "production ?" not in railway_ts
    assert "redis(" not in railway_ts


def _database_variables(web: dict) -> dict:
    variables = web["variables"]
    references = {name: (value["resource"], value["output"]) for name, value in variables.items() if "output" in value}
    return {"references": references, "replicas": _literal(web, "DATABASE_REPLICAS")}


@pytest.mark.parametrize("plan", DATABASE_PLANS)
def test_railway_ts_gives_the_service_both_database_urls_and_its_replica_count(railway_configs, plan):
    """DATABASE_URL (PgBouncer's once it is on), DATABASE_UNPOOLED_URL (Postgres's), and the replicas it runs."""
    config, _ = railway_configs[(plan, "postgres")]
    for environment, state in evaluate(config).items():
        web = _web(state)
        [database] = [resource for resource in state["resources"] if resource.get("engine") == "postgres"]
        assert database["name"] == POSTGRES
        found = _database_variables(web)
        assert found["references"]["DATABASE_URL"] == (database["address"], "DATABASE_URL")
        assert found["references"]["DATABASE_UNPOOLED_URL"] == (database["address"], "DATABASE_UNPOOLED_URL")
        assert found["replicas"] == str(_replicas(web["deploy"])), environment


def _budgeted_replicas(project: Path, variables: dict) -> int:
    """The replica count the project's connection budget uses (railkit.db.cluster_link.plan) for these variables."""
    program = (
        "import json, sys\n"
        "from railkit.settings import Settings\n"
        "from railkit.db.budget import replicas_of\n"
        "from railkit.db.config import read_database_settings\n"
        "env = json.loads(sys.argv[1])\n"
        "settings = Settings.from_env(env)\n"
        "print(read_database_settings(settings, env).replicas or replicas_of(settings.plan))\n"
    )
    env = {**variables, "DATABASE_URL": "postgresql://u@postgres.railway.internal:5432/railway"}
    python = project_venv(project) / "bin" / "python"
    found = subprocess.run(
        [str(python), "-c", program, json.dumps(env)], cwd=project, capture_output=True, text=True, check=True
    )
    return int(found.stdout)


def test_one_edit_of_the_replicas_moves_railway_and_the_budget_together(railway_configs):
    """An owner raises production's replicas to 6 in railway.ts: Railway runs 6, and the budget counts 6."""
    config, project = railway_configs[("hobby", "postgres")]
    source = config.read_text()
    assert source.count("const replicas = production ? 2 : 1;") == 1, "one place says how many"
    edited = WORK / "hobby-postgres-6-replicas" / "railway.ts"  # beside node_modules: the SDK resolves from there
    edited.parent.mkdir(exist_ok=True)
    edited.write_text(source.replace("const replicas = production ? 2 : 1;", "const replicas = production ? 6 : 1;"))
    for path, expected in ((config, {"production": 2, "staging": 1}), (edited, {"production": 6, "staging": 1})):
        for environment, state in evaluate(path).items():
            web = _web(state)
            literals = {name: value["value"] for name, value in web["variables"].items() if value["type"] == "literal"}
            assert _replicas(web["deploy"]) == expected[environment]
            assert _budgeted_replicas(project, literals) == expected[environment], (path, environment)


def _budget(project: Path, variables: dict, workers: int, max_connections: int) -> dict:
    """The web service's connection budget (railkit.db's own arithmetic) for these variables, as a dict."""
    program = (
        "import dataclasses, json, sys\n"
        "from railkit.settings import Settings\n"
        "from railkit.db.budget import ServerLimits, plan_budget, replicas_of\n"
        "from railkit.db.config import read_database_settings\n"
        "env, workers, usable = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])\n"
        "settings = Settings.from_env(env)\n"
        "db = read_database_settings(settings, env)\n"
        "budget = plan_budget(usable=ServerLimits(usable, 'test'), workers=workers, concurrency=32,\n"
        "    replicas=db.replicas or replicas_of(settings.plan), reserved=db.reserved, others=db.others)\n"
        "print(json.dumps({**dataclasses.asdict(budget), 'service_total': budget.service_total}))\n"
    )
    env = {**variables, "DATABASE_URL": "postgresql://u@postgres.railway.internal:5432/railway"}
    python = project_venv(project) / "bin" / "python"
    found = subprocess.run(
        [str(python), "-c", program, json.dumps(env), str(workers), str(max_connections)],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(found.stdout)


def test_a_second_service_gets_its_own_start_command_and_a_declared_share_of_the_database(railway_configs):
    """WORKER = true: a worker service from the same code, and the web service's budget leaves room for it."""
    config, project = railway_configs[("hobby", "postgres")]
    source = config.read_text()
    assert source.count("const WORKER = false;") == 1
    states = {"off": evaluate(config)}
    chosen = WORK / "hobby-postgres-worker" / "railway.ts"
    chosen.parent.mkdir(exist_ok=True)
    chosen.write_text(source.replace("const WORKER = false;", "const WORKER = true;"))
    checked = subprocess.run(
        [str(SDK / "node_modules" / ".bin" / "tsc"), "--noEmit", "--strict", "--target", "ES2022", "--module",
         "NodeNext", "--moduleResolution", "NodeNext", "--types", "", str(chosen)],
        capture_output=True, text=True, cwd=SDK,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    states["on"] = evaluate(chosen)
    for environment in ("production", "staging"):
        off, on = states["off"][environment], states["on"][environment]
        assert [resource["name"] for resource in off["resources"] if resource["type"] == "service"] == ["my-service"]
        services = {resource["name"]: resource for resource in on["resources"] if resource["type"] == "service"}
        web, worker = services["my-service"], services["my-service-worker"]
        assert worker["deploy"]["startCommand"] == "python -m my_service.worker"
        assert "healthcheckPath" not in worker["deploy"] and "preDeploy" not in json.dumps(worker["deploy"])
        worker_pool = int(_literal(worker, "DATABASE_POOL_SIZE"))
        share = _replicas(worker["deploy"]) * worker_pool * 2  # old and new deployment, during a deploy
        assert _literal(web, "DATABASE_OTHER_CONNECTIONS") == str(share) and share > 0
        assert _literal(_web(off), "DATABASE_OTHER_CONNECTIONS") == "0"
        for name in ("DATABASE_URL", "DATABASE_UNPOOLED_URL"):
            assert worker["variables"][name] == web["variables"][name]
        # The web service's pools, the worker's share and the 3 reserved fit in Postgres's default 100.
        literals = {name: value["value"] for name, value in web["variables"].items() if value["type"] == "literal"}
        budget = _budget(project, literals, workers=5, max_connections=100)
        assert budget["others"] == share
        assert budget["service_total"] + share + budget["reserved"] <= 100
