"""How many workers this container can really run.

os.cpu_count() reports the host's cores inside a container, so the CPUs and
memory come from the container's cgroup limits first. Each figure carries the
place it came from, for the start-up log.
"""

import math
import os
from dataclasses import dataclass
from pathlib import Path

import psutil

from .. import project
from ..settings import Settings

CGROUP_ROOT = Path("/sys/fs/cgroup")
# cgroup v1 writes a huge number, not "max", when memory is unlimited.
UNLIMITED_BYTES = 1 << 60
# Memory kept aside for the master process and the kernel's page cache.
MASTER_RESERVE_MB = 96
# Threads per gthread worker, chosen by `make bench`'s sizing sweep on 2 CPUs:
# 5 workers x 32 threads served a 50 ms I/O route at 200 connections about
# twice as fast as `flask run`, where 5 x 4 (20 requests in flight) managed a
# third of it, and CPU-bound throughput did not drop. Idle threads are never
# started (the pool grows on demand), and large request bodies are capped per
# worker, so more threads do not multiply the worst-case memory.
GTHREAD_THREADS = 32
# Blocking threads per granian worker of a gthread project: they bound the
# routes that wait on I/O, and CPU-bound routes did not slow with more
# (docs/BENCHMARKS.md). granian starts them on demand, and stops idle ones.
GRANIAN_THREADS = 128


@dataclass(frozen=True)
class Measure:
    """A figure and where it was read."""

    value: float
    source: str


@dataclass(frozen=True)
class ClusterSize:
    """The worker count and the reasoning behind it."""

    workers: int
    threads: int
    cpus: Measure
    memory_mb: Measure
    reason: str


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> Measure | None:
    """CPUs allowed by the cgroup quota (v2 cpu.max, then v1 cfs quota), or None."""
    cpu_max = _read(root / "cpu.max")
    if cpu_max:
        quota, _, period = cpu_max.partition(" ")
        if quota != "max" and period:
            return Measure(int(quota) / int(period), "cgroup v2 cpu.max")
        return None
    for folder in ("cpu", "cpu,cpuacct"):
        quota, period = _read(root / folder / "cpu.cfs_quota_us"), _read(root / folder / "cpu.cfs_period_us")
        if quota and period and int(quota) > 0:
            return Measure(int(quota) / int(period), "cgroup v1 cpu.cfs_quota_us")
    return None


def cgroup_memory_limit_mb(root: Path = CGROUP_ROOT) -> Measure | None:
    """Memory allowed by the cgroup (v2 memory.max, then v1 limit_in_bytes), or None."""
    memory_max = _read(root / "memory.max")
    if memory_max:
        if memory_max == "max":
            return None
        return Measure(int(memory_max) / 2**20, "cgroup v2 memory.max")
    limit = _read(root / "memory" / "memory.limit_in_bytes")
    if limit and int(limit) < UNLIMITED_BYTES:
        return Measure(int(limit) / 2**20, "cgroup v1 memory.limit_in_bytes")
    return None


def available_cpus(root: Path = CGROUP_ROOT) -> Measure:
    """The fewest CPUs any layer allows: cgroup quota, CPU affinity, core count."""
    candidates = [Measure(os.cpu_count() or 1, "os.cpu_count")]
    if hasattr(os, "sched_getaffinity"):
        candidates.append(Measure(len(os.sched_getaffinity(0)), "CPU affinity"))
    quota = cgroup_cpu_limit(root)
    if quota:
        candidates.append(quota)
    return min(candidates, key=lambda measure: measure.value)


def available_memory_mb(root: Path = CGROUP_ROOT) -> Measure:
    """The container's memory limit, else the machine's memory."""
    limit = cgroup_memory_limit_mb(root)
    total = Measure(psutil.virtual_memory().total / 2**20, "psutil total memory")
    return min([limit, total], key=lambda measure: measure.value) if limit else total


def workers_for_cpus(cpus: float, worker_class: str) -> int:
    """Workers that keep every CPU busy for this worker class.

    sync and gthread workers block while a request runs Python code, so
    gunicorn's rule of 2 x CPUs + 1 keeps a CPU busy while another worker
    waits or holds its GIL. A gevent worker never blocks on I/O, so one per CPU
    is enough.
    """
    whole_cpus = max(1, math.ceil(cpus))
    if worker_class == "gevent":
        return whole_cpus
    return 2 * whole_cpus + 1


def threads_per_worker(worker_class: str, server: str) -> int:
    """The requests one worker runs at once on threads: a gthread project's pool; sync and gevent use one."""
    if worker_class != "gthread":
        return 1
    return GRANIAN_THREADS if server == "granian" else GTHREAD_THREADS


def workers_for_memory(memory_mb: float, worker_max_memory_mb: int) -> int:
    """Workers that fit even if every one grows to its memory limit."""
    return int((memory_mb - MASTER_RESERVE_MB) // worker_max_memory_mb)


def size_cluster(settings: Settings, cpus: Measure | None = None, memory_mb: Measure | None = None) -> ClusterSize:
    """Decide the worker count from the settings, the container and the plan."""
    cpus = cpus or available_cpus()
    memory_mb = memory_mb or available_memory_mb()
    plan = settings.plan
    # The plan's replica size caps what a host may show beyond our container.
    usable_cpus = min(cpus.value, plan.vcpu)
    usable_memory = min(memory_mb.value, plan.memory_mb)
    threads = threads_per_worker(settings.worker_class, project.SERVER)

    if settings.web_concurrency is not None:
        workers, reason = settings.web_concurrency, "WEB_CONCURRENCY is set"
    elif not settings.clustering:
        workers, reason = 1, "clustering is off (single-process mode)"
    else:
        by_cpu = workers_for_cpus(usable_cpus, settings.worker_class)
        by_memory = workers_for_memory(usable_memory, settings.worker_max_memory_mb)
        workers = max(1, min(by_cpu, by_memory))
        reason = (
            f"{by_cpu} for {usable_cpus:g} CPUs ({settings.worker_class}), "
            f"{by_memory} fit in {usable_memory:.0f} MB at {settings.worker_max_memory_mb} MB each "
            f"(plan {plan.name}: {plan.vcpu} vCPU, {plan.memory_mb} MB per replica)"
        )
    return ClusterSize(workers=workers, threads=threads, cpus=cpus, memory_mb=memory_mb, reason=reason)
