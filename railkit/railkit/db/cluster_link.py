"""How the database takes part in the cluster: the budget in the master, a pool per worker, closed at exit.

The cluster does not import this module: init_app joins the cluster's hooks
(railkit.cluster.hooks.join), and the platform's hooks call these back. The
budget is decided before the first fork, decided again when gunicorn re-reads
its configuration (SIGHUP), and checked when TTIN/TTOU change the workers: a
change that would not fit is refused with one line. The master itself holds
no connection once it forks.
"""

import logging
import sys

import psycopg

from ..cluster import hooks, open_files
from ..settings import EXIT_BAD_CONFIG
from . import engines
from .budget import (
    POSTGRES_DEFAULT_MAX_CONNECTIONS,
    Budget,
    BudgetError,
    ServerLimits,
    ask_server,
    plan_budget,
    pooler_limits,
    replicas_of,
)
from .messages import first_line

log = logging.getLogger(__name__)


def join_cluster() -> None:
    """Have the cluster's hooks size the pools in the master and make or close them in each worker."""
    hooks.join("on_starting", decide_budget)
    hooks.join("on_reload", decide_budget_again)
    hooks.join("nworkers_changed", check_worker_change)
    hooks.join("post_fork", engines.forget_inherited)
    hooks.join("worker_exit", engines.dispose)


def requests_at_once(settings, size, cfg) -> int:
    """How many requests one worker serves at once: its threads, or its greenlets under gevent.

    A gevent worker's pool is worker_connections, capped by its open-files limit (the master's, inherited).
    """
    if settings.worker_class == "gevent":
        return open_files.connection_capacity(cfg.worker_connections)
    return size.threads


def decide_budget(settings, size, cfg) -> None:
    """In the master, before any fork: size each worker's pool, say so, or refuse the start.

    `size` is what gunicorn really runs (hooks.running_size): gunicorn.conf.py or the command line may
    have raised the workers or threads the platform chose, and every one of them holds a pool.
    """
    close_masters_connections()
    database = engines.current_settings()
    try:
        budget = plan(settings, size, cfg)
    except BudgetError as error:
        variables = ["DATABASE_POOL_SIZE"] if database.pool_size else ["WEB_CONCURRENCY", "DATABASE_REPLICAS"]
        log.error("Refusing to start: %s", error, extra={"variable": variables[0], "variables": variables})
        sys.exit(EXIT_BAD_CONFIG)
    engines.set_budget(budget)
    state(budget)


def decide_budget_again(settings, size, server) -> None:
    """SIGHUP: gunicorn re-read its configuration and is about to fork `size.workers` new workers.

    They get a budget of their own when it fits; when it does not, gunicorn
    keeps the workers it had, whose budget stands, and one line says why.
    """
    close_masters_connections()
    current = engines.current_budget()
    try:
        budget = plan(settings, size, server.cfg)
    except BudgetError as error:
        kept = current.workers
        log.error(
            "Refusing the reloaded configuration's %s workers: %s; keeping %s",
            size.workers,
            error,
            kept,
            extra={"variable": "WEB_CONCURRENCY", "workers": size.workers, "kept_workers": kept},
        )
        server.cfg.set("workers", kept)
        server.num_workers = kept
        return
    engines.set_budget(budget)
    state(budget)


def check_worker_change(server, new_value: int, old_value: int) -> None:
    """TTIN/TTOU: more workers only if their pools still fit; fewer always."""
    budget = engines.current_budget()
    if budget is None or not new_value or new_value == budget.workers:
        return
    if new_value > budget.workers and not budget.fits(new_value):
        log.error(
            "Refusing %s workers: %s per worker x %s workers x %s replicas x 2 deployments = %s connections, "
            "but %s allows %s (%s) less %s kept; keeping %s",
            new_value,
            budget.per_worker,
            new_value,
            budget.replicas,
            budget.with_workers(new_value).service_total,
            budget.holder,
            budget.usable,
            budget.source,
            budget.reserved + budget.others,
            budget.workers,
            extra={"variable": "WEB_CONCURRENCY", "workers": new_value, "kept_workers": budget.workers},
        )
        server.num_workers = budget.workers  # gunicorn calls this hook again, with the count it keeps
        return
    engines.set_budget(budget.with_workers(new_value))
    state(engines.current_budget())


def plan(settings, size, cfg) -> Budget:
    """The budget for `size` workers, against what the pooler or the server allows (BudgetError when none fits)."""
    database = engines.current_settings()
    replicas = database.replicas or replicas_of(settings.plan)
    if database.pooler:
        limits = pooler_limits(database.pooler, database.pooler_connections, database.pooler_connections_declared)
        # Migrations and an admin reach Postgres past the pooler, when there is a way past it.
        reserved = 0 if database.unpooled_url else database.reserved
    else:
        limits = ask_limits(database)
        reserved = database.reserved
    return plan_budget(
        usable=limits,
        workers=size.workers,
        concurrency=requests_at_once(settings, size, cfg),
        replicas=replicas,
        reserved=reserved,
        pool_size=database.pool_size,
        others=database.others,
    )


def ask_limits(database) -> ServerLimits:
    """max_connections and the role's limits, over one connection closed before returning."""
    try:
        return ask_server(database.url, database.connect_timeout, engines.application_name("master"))
    except psycopg.Error as error:
        # Down at start: the cluster still starts (liveness answers, readiness says why) on Postgres's default.
        log.warning("Could not ask the database at %s for max_connections: %s", database.host, first_line(error))
        return ServerLimits(POSTGRES_DEFAULT_MAX_CONNECTIONS, "assumed: the server did not answer at start")


def state(budget: Budget) -> None:
    database = engines.current_settings()
    log.info(
        "Database connections: %s",
        budget.describe(),
        extra={
            "pool_size": budget.pool_size,
            "max_overflow": budget.max_overflow,
            "service_connections": budget.service_total,
            "usable_connections": budget.usable,
            "statement_timeout_ms": database.statement_timeout_ms,
            "pool_timeout_s": database.pool_timeout,
            "pooler": database.pooler or "none",
        },
    )


def close_masters_connections() -> None:
    """Close the connections the master's own engine holds, naming the code that made it.

    The app is loaded in the master before the fork: an app that queries at
    import or in create_app leaves the master a pool of its own, outside the
    budget, for as long as the service runs.
    """
    made_by = engines.dispose_own()
    if made_by:
        log.warning(
            "The master process opened a database connection (%s): closed it before forking the workers; "
            "query in requests, not at import or in create_app",
            made_by,
            extra={"opened_at": made_by},
        )
