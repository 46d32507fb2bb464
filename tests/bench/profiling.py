"""Where the time goes: each layer's CPU cost per request, and a flame graph of one worker under load."""

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from .load import wrk

PY_SPY = Path(sys.executable).with_name("py-spy")
LAYERS_PROBE = Path(__file__).with_name("layers_probe.py")


def layer_costs(project: Path, venv: Path, package: str, seconds: float, rounds: int) -> dict:
    """CPU microseconds per /cpu request: bare Flask, bare Flask plus each layer, the generated app."""
    shutil.copy(LAYERS_PROBE, project / LAYERS_PROBE.name)
    run = subprocess.run(
        [str(venv / "bin" / "python"), LAYERS_PROBE.name, package, str(seconds), str(rounds)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
        env={"PATH": "/usr/bin:/bin", "RATE_LIMIT": "1000000000/second"},
    )
    if run.returncode != 0:
        raise RuntimeError(f"layers probe failed:\n{run.stderr[-3000:]}")
    micros = json.loads(run.stdout.splitlines()[-1])
    bare = micros["bare Flask"]
    return {
        "us_per_request": micros,
        "cost_vs_bare": {name: round(value / bare - 1, 3) for name, value in micros.items() if name != "bare Flask"},
    }


def flame_graph(server, out: Path, seconds: float) -> dict:
    """A py-spy SVG of one worker while /cpu is under load at 16 connections."""
    if not PY_SPY.exists():
        return {"skipped": f"py-spy is not installed in {PY_SPY.parent} (pip install -r tests/bench/requirements.txt)"}
    worker = server.processes()[1].pid
    svg = out / "flame-gthread-cpu.svg"
    load = threading.Thread(target=wrk, args=(server.url + "/cpu", 16, seconds + 2), daemon=True)
    load.start()
    record = subprocess.run(
        [
            str(PY_SPY), "record", "--pid", str(worker), "--duration", str(max(1, round(seconds))),
            "--output", str(svg), "--nonblocking",
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )  # fmt: skip
    load.join()
    if record.returncode != 0 or not svg.exists():
        # Containers often forbid ptrace (CAP_SYS_PTRACE, kernel.yama.ptrace_scope).
        return {"skipped": f"py-spy could not sample the worker: {record.stderr.strip()[-300:]}"}
    return {"svg": str(svg), "worker_pid": worker}
