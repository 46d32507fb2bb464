"""How the database takes part in the cluster: the budget in the master, a pool per worker, closed at exit.

The cluster does not import this module: init_app joins the cluster's hooks
(railkit.cluster.hooks.join), and the platform's hooks call these back.
"""

import logging
import sys

import psycopg

from ..cluster import hooks, open_files
from ..settings import EXIT_BAD_CONFIG
from . import engines
from .budget import POSTGRES_DEFAULT_MAX_CONNECTIONS, BudgetError, ServerLimits, ask_server, plan_budget, replicas_of

log = logging.getLogger(__name__)


def join_cluster() -> None:
    """Have the cluster's hooks size the pools in the master and make or close them in each worker."""
    hooks.join("on_starting", decide_budget)
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
    """In the master, before any fork: ask the server, size each worker's pool, say so, or refuse the start.

    `size` is what gunicorn really runs (hooks.running_size): gunicorn.conf.py or the command line may
    have raised the workers or threads the platform chose, and every one of them holds a pool.
    """
    database = engines.current_settings()
    replicas = database.replicas or replicas_of(settings.plan)
    try:
        limits = ask_server(database.url, database.connect_timeout, engines.application_name("master"))
    except psycopg.Error as error:
        # Down at start: the cluster still starts (liveness answers, readiness says why) on Postgres's default.
        limits = ServerLimits(POSTGRES_DEFAULT_MAX_CONNECTIONS, "assumed: the server did not answer at start")
        log.warning(
            "Could not ask the database at %s for max_connections: %s",
            database.host,
            str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__,
        )
    try:
        budget = plan_budget(
            usable=limits,
            workers=size.workers,
            concurrency=requests_at_once(settings, size, cfg),
            replicas=replicas,
            reserved=database.reserved,
            pool_size=database.pool_size,
        )
    except BudgetError as error:
        variables = ["DATABASE_POOL_SIZE"] if database.pool_size else ["WEB_CONCURRENCY", "DATABASE_REPLICAS"]
        log.error("Refusing to start: %s", error, extra={"variable": variables[0], "variables": variables})
        sys.exit(EXIT_BAD_CONFIG)
    engines.set_budget(budget)
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
        },
    )
