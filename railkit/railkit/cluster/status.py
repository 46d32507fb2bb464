"""A table of the running cluster, like `pm2 monit`: one row per worker."""

import time
from dataclasses import asdict, dataclass

import psutil

from .board import Board
from .watchdog import resident_memory_mb, unique_memory_mb

# How long CPU use is sampled for each row.
CPU_SAMPLE_SECONDS = 0.5


@dataclass(frozen=True)
class WorkerRow:
    worker: int
    pid: int
    uptime_s: float
    requests: int
    # USS: memory only this worker holds (what WORKER_MAX_MEMORY_MB limits);
    # RSS also counts pages still shared with the master since the fork.
    uss_mib: float | None
    rss_mib: float | None
    cpu_percent: float | None


def read_rows(board: Board) -> list[WorkerRow]:
    """Measure every live worker on the board."""
    slots = board.workers()
    processes = {}
    for slot in slots:
        try:
            processes[slot.pid] = psutil.Process(slot.pid)
            processes[slot.pid].cpu_percent(None)
        except psutil.NoSuchProcess:
            pass
    time.sleep(CPU_SAMPLE_SECONDS)
    now = time.time()
    rows = []
    for slot in slots:
        process = processes.get(slot.pid)
        try:
            cpu = process.cpu_percent(None) if process else None
        except psutil.NoSuchProcess:
            cpu = None
        uss, rss = unique_memory_mb(slot.pid), resident_memory_mb(slot.pid)
        rows.append(WorkerRow(slot.index + 1, slot.pid, now - slot.started, slot.requests, uss, rss, cpu))
    return rows


def render(board: Board, rows: list[WorkerRow]) -> str:
    """The rows as a fixed-width table under a one-line summary of the master."""
    master_pid, configured, started = board.master()
    lines = [
        f"master pid {master_pid}, up {_duration(time.time() - started)}, {len(rows)} of {configured} workers live",
        f"{'worker':>6}  {'pid':>7}  {'uptime':>8}  {'requests':>9}  {'USS MiB':>8}  {'RSS MiB':>8}  {'cpu':>6}",
    ]
    for row in rows:
        uss = f"{row.uss_mib:.1f}" if row.uss_mib is not None else "-"
        rss = f"{row.rss_mib:.1f}" if row.rss_mib is not None else "-"
        cpu = f"{row.cpu_percent:.0f}%" if row.cpu_percent is not None else "-"
        uptime = _duration(row.uptime_s)
        lines.append(f"{row.worker:>6}  {row.pid:>7}  {uptime:>8}  {row.requests:>9}  {uss:>8}  {rss:>8}  {cpu:>6}")
    return "\n".join(lines)


def as_json(board: Board, rows: list[WorkerRow]) -> dict:
    master_pid, configured, started = board.master()
    return {
        "master_pid": master_pid,
        "configured_workers": configured,
        "uptime_s": round(time.time() - started, 1),
        "workers": [asdict(row) for row in rows],
    }


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"
