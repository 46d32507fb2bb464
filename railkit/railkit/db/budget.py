"""The connection budget: how many Postgres connections each worker may hold so the whole service fits.

Every worker of every replica has its own pool, and while Railway deploys,
the new deployment starts and passes its healthcheck while the old one still
serves (then drains): for a while twice the replicas hold pools. Postgres
refuses connections beyond max_connections ("too many clients"), on the day
traffic arrives. So the per-worker cap is what the server allows, less a few
kept for migrations and an admin, shared by workers x replicas x 2. Through a
pooler (Railway's PgBouncer) the figure is what the pooler accepts instead:
migrations and admins then reach Postgres past it.
"""

import dataclasses
from dataclasses import dataclass

# Deployments of the service holding pools at once: the new one and the old one it replaces.
DEPLOYMENTS_AT_ONCE = 2
# Postgres's own default max_connections, assumed when the server cannot be asked at start.
POSTGRES_DEFAULT_MAX_CONNECTIONS = 100
# A pool opens its connections on demand and keeps what it opened: an idle worker holds few.
DEFAULT_POOL_OUTSIDE_CLUSTER = 5


class BudgetError(ValueError):
    """The service cannot fit in the server's connections; the message names what to change."""


@dataclass(frozen=True)
class ServerLimits:
    """What the server (or the pooler in front of it) lets this role open, and where the figure came from."""

    usable: int
    source: str
    # Who sets the limit, and how to raise it ({to}: by how much), for the lines that state the budget.
    holder: str = "the server"
    remedy: str = "raise the server's max_connections{to}"


@dataclass(frozen=True)
class Budget:
    """Connections per worker, and the arithmetic behind them."""

    pool_size: int
    max_overflow: int
    workers: int
    replicas: int
    usable: int
    reserved: int
    source: str
    holder: str = "the server"
    # Connections other services hold on the same database (a worker, a cron: DATABASE_OTHER_CONNECTIONS).
    others: int = 0

    @property
    def per_worker(self) -> int:
        return self.pool_size + self.max_overflow

    @property
    def service_total(self) -> int:
        """The most connections the service can hold at once, deploys included."""
        return self.per_worker * self.workers * self.replicas * DEPLOYMENTS_AT_ONCE

    def fits(self, workers: int) -> bool:
        """Whether `workers` workers with this per-worker pool stay within what is allowed."""
        return self.with_workers(workers).service_total <= self.usable - self.reserved - self.others

    def with_workers(self, workers: int) -> "Budget":
        return dataclasses.replace(self, workers=workers)

    def describe(self) -> str:
        return (
            f"{self.per_worker} per worker x {self.workers} workers x {self.replicas} replicas "
            f"x {DEPLOYMENTS_AT_ONCE} deployments during a deploy = {self.service_total} "
            f"of {self.usable} {self.holder} allows ({self.source}), {self.reserved} kept for migrations and an admin"
            + (f", {self.others} for other services (DATABASE_OTHER_CONNECTIONS)" if self.others else "")
        )


def plan_budget(
    *,
    usable: ServerLimits,
    workers: int,
    concurrency: int,
    replicas: int,
    reserved: int,
    pool_size: int | None = None,
    others: int = 0,
) -> Budget:
    """The per-worker pool that fits; BudgetError naming the variables to change when none does.

    `concurrency` is how many requests one worker serves at once (threads,
    greenlets): more connections than that would never be used. `others` are
    the connections other services of the project hold on the same database.
    """
    holders = workers * replicas * DEPLOYMENTS_AT_ONCE
    kept = reserved + others
    kept_text = f"{kept} kept for migrations and an admin" + (f" and other services ({others})" if others else "")
    fits = (usable.usable - kept) // holders if usable.usable > kept else 0
    if pool_size is not None:
        if pool_size > fits:
            raise BudgetError(
                f"DATABASE_POOL_SIZE={pool_size} x {workers} workers x {replicas} replicas x {DEPLOYMENTS_AT_ONCE} "
                f"deployments = {pool_size * holders} connections, but {usable.holder} allows {usable.usable} "
                f"({usable.source}) less {kept_text}: lower DATABASE_POOL_SIZE to {max(fits, 1)} or less, "
                f"lower WEB_CONCURRENCY or DATABASE_REPLICAS, or {usable.remedy.format(to='')}"
            )
        per_worker = pool_size
    else:
        if fits < 1:
            needed = holders + kept
            raise BudgetError(
                f"{workers} workers x {replicas} replicas x {DEPLOYMENTS_AT_ONCE} deployments need at least "
                f"{needed} connections, but {usable.holder} allows {usable.usable} ({usable.source}) with "
                f"{kept_text}: lower WEB_CONCURRENCY or DATABASE_REPLICAS, lower "
                f"DATABASE_RESERVED_CONNECTIONS{' or DATABASE_OTHER_CONNECTIONS' if others else ''}, "
                f"or {usable.remedy.format(to=f' to {needed} or more')}"
            )
        per_worker = min(fits, max(1, concurrency))
    # Everything in the pool proper, no overflow: an overflow connection is closed the moment it is
    # returned, so under steady load above pool_size every checkout would open a new connection.
    return Budget(
        pool_size=per_worker,
        max_overflow=0,
        workers=workers,
        replicas=replicas,
        usable=usable.usable,
        reserved=reserved,
        source=usable.source,
        holder=usable.holder,
        others=others,
    )


def outside_cluster(pool_size: int | None) -> Budget:
    """The pool of a process no cluster sized (flask run, tests): small, or DATABASE_POOL_SIZE."""
    size = pool_size or DEFAULT_POOL_OUTSIDE_CLUSTER
    return Budget(pool_size=size, max_overflow=0, workers=1, replicas=1, usable=0, reserved=0, source="no cluster")


def replicas_of(plan) -> int:
    """The replicas railway.ts runs in production for this plan (regions added up)."""
    production = plan.replicas["production"]
    return sum(production.values()) if isinstance(production, dict) else int(production)


def pooler_limits(mode: str, connections: int, declared: bool) -> ServerLimits:
    """What a pooler in `mode` accepts from this service: DATABASE_POOLER_CONNECTIONS, or Railway's default."""
    source = f"DATABASE_POOLER_CONNECTIONS={connections}" if declared else f"Railway PgBouncer's default in {mode} mode"
    remedy = "raise the pooler's limit{to} (PgBouncer's MAX_CLIENT_CONN, then DATABASE_POOLER_CONNECTIONS)"
    return ServerLimits(connections, source, holder=f"the {mode}-mode pooler", remedy=remedy)


def usable_connections(max_connections: int, superuser_reserved: int, is_superuser: bool, role_limit: int) -> int:
    """Connections this role may open: max_connections, less the superusers' share, within the role's limit."""
    usable = max_connections - (0 if is_superuser else superuser_reserved)
    if role_limit >= 0:
        usable = min(usable, role_limit)
    return max(0, usable)


def ask_server(url: str, connect_timeout: int, application_name: str) -> ServerLimits:
    """Ask the server, over one short-lived connection closed before returning, what this role may open."""
    import psycopg

    query = (
        "SELECT current_setting('max_connections')::int, current_setting('superuser_reserved_connections')::int, "
        "rolsuper, rolconnlimit FROM pg_roles WHERE rolname = current_user"
    )
    with psycopg.connect(
        libpq_url(url), connect_timeout=connect_timeout, application_name=application_name, autocommit=True
    ) as connection:
        max_connections, superuser_reserved, is_superuser, role_limit = connection.execute(query).fetchone()
    usable = usable_connections(max_connections, superuser_reserved, is_superuser, role_limit)
    remedy = "raise the server's max_connections{to} (ALTER SYSTEM SET max_connections, then restart Postgres)"
    return ServerLimits(usable, f"max_connections={max_connections}", remedy=remedy)


def libpq_url(url: str) -> str:
    """The URL as libpq reads it (SQLAlchemy's driver suffix removed)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme.split('+')[0]}://{rest}"
