"""Railway's plans as data: the one table that sizes the cluster, railway.ts and the README."""

from dataclasses import dataclass

from . import project

# The plan this project was generated for; RAILWAY_PLAN overrides it at run time.
DEFAULT_PLAN = project.DEFAULT_PLAN


@dataclass(frozen=True)
class Plan:
    """What one Railway plan allows, and what this project asks of it."""

    name: str
    label: str
    price: str
    # Railway's ceilings for one service on this plan.
    max_replicas: int
    max_vcpu: int
    max_memory_mb: int
    # What railway.ts asks for: replicas per environment, size of each replica.
    replicas: dict
    vcpu: int
    memory_mb: int
    # Defaults for the cluster and the app.
    clustering: bool
    worker_max_memory_mb: int
    rate_limit: str
    max_body_mb: int
    graceful_timeout: int
    # Seconds a stopping replica keeps serving while proxies move away (SHUTDOWN_DELAY).
    shutdown_delay: int
    restart_policy: str
    restart_retries: int
    overlap_seconds: int


def _load_plans() -> dict[str, Plan]:
    return {name: Plan(name=name, **fields) for name, fields in project.PLANS_TABLE.items()}


PLANS = _load_plans()
