"""Run the benchmark: `make bench` (full) or `python -m tests.bench --quick` (a smoke run)."""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from ..support import ROOT, project_venv
from . import report
from .scenarios import Bench

OUT = ROOT / "build" / "bench"


def generate(name: str, worker_class: str, into: Path) -> tuple[Path, Path, str]:
    """Bake a project, add the benchmark routes beside main.py, and give it a venv."""
    package = name.replace("-", "_")
    subprocess.run(
        [
            sys.executable, "-m", "cookiecutter", str(ROOT), "--no-input", "--output-dir", str(into),
            f"project_name={name}", f"project={name}", f"package={package}", f"worker_class={worker_class}",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    project = into / name
    shutil.copy(Path(__file__).with_name("bench_routes.py"), project / "bench_routes.py")
    return project, project_venv(project), package


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    return f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}, {platform.system()}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench")
    parser.add_argument("--quick", action="store_true", help="one short round of each scenario (checks the bench)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    rounds, seconds = (1, 1.0) if args.quick else (3, 8.0)

    shutil.rmtree(args.out / "projects", ignore_errors=True)
    default = generate("bench-gthread", "gthread", args.out / "projects")
    gevent = generate("bench-gevent", "gevent", args.out / "projects")
    bench = Bench(default, gevent, rounds=rounds, seconds=seconds)

    results = {"machine": machine(), "rounds": rounds, "seconds_per_run": seconds}
    results["throughput"] = bench.throughput()
    results["workers"] = bench.workers_sweep((1, 2) if args.quick else (1, 2, 4, 8))
    results["chaos"] = bench.chaos(duration=4.0 if args.quick else 20.0, every=2.0)
    results["graceful_stop"] = bench.graceful_stop(load_seconds=1.0 if args.quick else 3.0)
    results["startup"] = bench.startup()
    results = json.loads(json.dumps(results, default=str))

    print(report.table(results))
    print()
    print(report.goals(results))
    data, chart = report.write(results, args.out)
    print(f"\nfigures: {data}\nchart: {chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
