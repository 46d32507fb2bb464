"""How long and how wide each scenario runs: the full bench, a quick look, and the test's smoke run."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    rounds: int  # alternated runs per throughput figure (the median is kept)
    seconds: float  # one wrk run
    loads: tuple  # (name, path, connections) of the throughput comparison
    gthread_grid: tuple  # (workers per CPU rule, threads) pairs of the sizing sweep
    other_workers: dict  # worker class -> worker counts of the sizing sweep
    memory_workers: tuple  # worker counts of the memory measure
    attack_seconds: float
    attack_servers: tuple  # worker classes under attack, plus "bare gunicorn"
    redeploy_seconds: float
    redeploy_servers: tuple
    chaos_seconds: float
    layer_seconds: float  # CPU seconds per app variant of the in-process layer costs
    flame_seconds: float  # 0: no flame graph


FULL = Profile(
    name="full",
    rounds=3,
    seconds=5.0,
    loads=(("cpu, 16 connections", "/cpu", 16), ("io, 200 connections", "/io", 200), ("io, 1000 connections", "/io", 1000)),
    gthread_grid=(("cpus+1", 16), ("cpus+1", 32), ("2*cpus+1", 4), ("2*cpus+1", 8), ("2*cpus+1", 16),
                  ("2*cpus+1", 32), ("2*cpus+1", 64)),
    other_workers={"gevent": ("cpus", "cpus+1", "2*cpus"), "sync": ("cpus+1", "2*cpus+1", "4*cpus+1")},
    memory_workers=(1, 2, 4, 8),
    attack_seconds=10.0,
    attack_servers=("gthread", "gevent", "sync", "bare gunicorn"),
    redeploy_seconds=8.0,
    redeploy_servers=("gthread", "bare gunicorn"),
    chaos_seconds=20.0,
    layer_seconds=1.0,
    flame_seconds=5.0,
)  # fmt: skip

QUICK = Profile(
    name="quick",
    rounds=1,
    seconds=2.0,
    loads=FULL.loads,
    gthread_grid=(("2*cpus+1", 4), ("2*cpus+1", 32)),
    other_workers={"gevent": ("cpus",), "sync": ("2*cpus+1",)},
    memory_workers=(1, 4),
    attack_seconds=4.0,
    attack_servers=FULL.attack_servers,
    redeploy_seconds=5.0,
    redeploy_servers=FULL.redeploy_servers,
    chaos_seconds=6.0,
    layer_seconds=0.3,
    flame_seconds=2.0,
)

# `make test`'s check that every scenario runs and reports: the smallest of each.
SMOKE = Profile(
    name="smoke",
    rounds=1,
    seconds=1.0,
    loads=(("cpu, 16 connections", "/cpu", 16), ("io, 200 connections", "/io", 200)),
    gthread_grid=(("2*cpus+1", 4),),
    other_workers={},
    memory_workers=(1, 2),
    attack_seconds=1.5,
    attack_servers=("gthread",),
    redeploy_seconds=3.0,
    redeploy_servers=("gthread",),
    chaos_seconds=3.0,
    layer_seconds=0.1,
    flame_seconds=0.0,
)

PROFILES = {profile.name: profile for profile in (FULL, QUICK, SMOKE)}


# The worker-count rules the sizing sweep tries, per CPU count.
RULES = {
    "cpus": lambda cpus: cpus,
    "cpus+1": lambda cpus: cpus + 1,
    "2*cpus": lambda cpus: 2 * cpus,
    "2*cpus+1": lambda cpus: 2 * cpus + 1,
    "4*cpus+1": lambda cpus: 4 * cpus + 1,
}


def workers_for(rule: str, cpus: int) -> int:
    """A worker count from a rule such as "2*cpus+1", for this machine's CPUs."""
    return RULES[rule](cpus)
