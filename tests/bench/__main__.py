"""Run the benchmark: `make bench` (full, ~35 min), `--quick` (a few minutes), `--smoke` (the test's check)."""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..support import ROOT, TEMPLATE, project_venv
from . import profiling, report, servers
from .profiles import PROFILES
from .scenarios import Bench

OUT = ROOT / "build" / "bench"
WORKER_CLASSES = ("gthread", "gevent", "sync")
# Servers measured beside the worker classes, each with the answers its projects are generated with: granian
# serves a gthread project's app, sized as gthread's (`python -m railkit.cluster serve` starts either).
SERVERS = {"granian": {"worker_class": "gthread", "server": "granian"}}
SCENARIOS = (
    "throughput", "database", "sizing", "memory", "layers", "metrics", "users", "attacks", "redeploy", "chaos",
    "graceful_stop", "startup", "flame", "tracing",
)  # fmt: skip
# The Python the memory scenario also measures beside the default (the first choice): the release before it.
PREVIOUS_PYTHON = TEMPLATE["python_version"][1]


def generate(name: str, into: Path, **answers: str) -> tuple[Path, Path, str]:
    """Bake a project with these cookiecutter answers, add the benchmark routes beside main.py, give it a venv."""
    package = name.replace("-", "_")
    subprocess.run(
        [
            sys.executable, "-m", "cookiecutter", str(ROOT), "--no-input", "--output-dir", str(into),
            f"project_name={name}", f"project={name}", f"package={package}",
            *(f"{question}={answer}" for question, answer in answers.items()),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    project = into / name
    shutil.copy(Path(__file__).with_name("bench_routes.py"), project / "bench_routes.py")
    if answers.get("database") == "postgres":
        shutil.copy(Path(__file__).with_name("bench_db_routes.py"), project / "bench_db_routes.py")
    venv = project_venv(project)
    # Every run then imports compiled code: the first one would compile it, and count the compiler's memory.
    python = venv / "bin" / "python"
    subprocess.run([python, "-m", "compileall", "-q", str(project)], check=True, capture_output=True)
    # The venv's packages too (the tests' venvs compile on first import): a file a package ships for another
    # Python fails to compile, and is never imported.
    subprocess.run([python, "-m", "compileall", "-q", str(venv / "lib")], check=False, capture_output=True)
    return project, venv, package


def answers_for(name: str) -> dict:
    """The cookiecutter answers of a bench project: a worker class, or a server of SERVERS."""
    return SERVERS.get(name, {"worker_class": name})


def install_bench_tools() -> None:
    """The bench's own pinned tools (py-spy) into this venv."""
    requirements = Path(__file__).with_name("requirements.txt")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", str(requirements)],
        check=False,
    )


def machine(venv: Path) -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    python = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return f"{os.cpu_count()} cores ({model}), projects on Python {python}, {platform.system()}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="one short round of each scenario (a few minutes)")
    mode.add_argument("--smoke", action="store_true", help="the smallest run of each scenario (checks the bench)")
    parser.add_argument("--only", help=f"comma-separated scenarios, of: {', '.join(SCENARIOS)}")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    profile = PROFILES["smoke" if args.smoke else "quick" if args.quick else "full"]
    chosen = args.only.split(",") if args.only else list(SCENARIOS)
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")

    started = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(args.out / "projects", ignore_errors=True)
    if "flame" in chosen and profile.flame_seconds and not profiling.PY_SPY.exists():
        install_bench_tools()
    # Projects by role and key: the default Python's per worker class (every scenario), postgres ones per worker
    # class (the database scenario), and gthread on the previous Python (the memory scenario).
    wanted = {("default", name): (f"bench-{name}", answers_for(name)) for name in (*WORKER_CLASSES, *SERVERS)}
    if "database" in chosen:
        wanted |= {
            ("database", name): (f"bench-{name}-postgres", {**answers_for(name), "database": "postgres"})
            for name in profile.database_classes
        }
    if "memory" in chosen:
        slug = PREVIOUS_PYTHON.replace(".", "")
        wanted[("python", PREVIOUS_PYTHON)] = (
            f"bench-gthread-py{slug}",
            {"worker_class": "gthread", "python_version": PREVIOUS_PYTHON},
        )
    if "tracing" in chosen:
        wanted[("tracing", "gthread")] = ("bench-gthread-tracing", {"worker_class": "gthread", "use_tracing": "yes"})
    with ThreadPoolExecutor() as pool:
        baked = pool.map(lambda made: generate(made[0], args.out / "projects", **made[1]), wanted.values())
        projects = dict(zip(wanted, baked, strict=True))
    bench = Bench(
        {key: found for (role, key), found in projects.items() if role == "default"},
        profile,
        node_missing=servers.install_node_cluster(),
        database_projects={key: found for (role, key), found in projects.items() if role == "database"},
        python_projects={key: found for (role, key), found in projects.items() if role == "python"},
        tracing_project=projects.get(("tracing", "gthread")),
    )

    results = {
        "machine": machine(bench.default[1]),
        "profile": profile.name,
        "rounds": profile.rounds,
        "seconds_per_run": profile.seconds,
    }
    if bench.node_missing:
        results["node_skipped"] = bench.node_missing
    steps = {
        "throughput": bench.throughput,
        "database": bench.database,
        "sizing": bench.sizing_sweep,
        "memory": bench.memory,
        "layers": lambda: profiling.layer_costs(*bench.default, profile.layer_seconds, profile.layer_rounds),
        "metrics": bench.metrics_cost,
        "users": bench.concurrent_users,
        "attacks": bench.attacks,
        "redeploy": bench.redeploys,
        "chaos": bench.chaos,
        "graceful_stop": bench.graceful_stop,
        "startup": bench.startup,
        "flame": lambda: _flame(bench, args.out, profile.flame_seconds),
        "tracing": bench.tracing_cost,
    }
    for name in chosen:
        step_started = time.monotonic()
        print(f"[{time.monotonic() - started:5.0f}s] {name}...", file=sys.stderr, flush=True)
        results[name] = steps[name]()
        results.setdefault("step_seconds", {})[name] = round(time.monotonic() - step_started, 1)
    results["total_seconds"] = round(time.monotonic() - started)
    results = json.loads(json.dumps(results, default=str))

    print(report.table(results))
    print()
    print(report.goals(results))
    data, chart = report.write(results, args.out)
    print(f"\nfigures: {data}\nchart: {chart}\ntook {results['total_seconds']}s")
    return 0


def _flame(bench: Bench, out: Path, seconds: float) -> dict:
    if not seconds:
        return {"skipped": "not in this profile"}
    server = bench.start_cluster()
    try:
        return profiling.flame_graph(server, out, seconds)
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
