"""The open-files limit: raised once by the master, and the connections a worker can hold under it.

Every client connection costs a worker one descriptor, and the soft limit
most containers start with (1,024) is far below what one worker can serve. The
hard limit is the ceiling the container was given; raising the soft limit to
it needs no privilege. nginx does it (worker_rlimit_nofile), and so does Go's
runtime for every program since 1.19. Workers inherit the master's limit.
"""

import logging
import resource

from . import limits

log = logging.getLogger(__name__)


def raise_soft_limit() -> tuple[int, int]:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; (before, after), equal when nothing changed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard <= soft:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        return soft, soft
    return soft, hard


def soft_limit() -> int:
    """This process's soft open-files limit (a large number when unlimited)."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return limits.WORKER_CONNECTIONS + limits.RESERVED_FILES if soft == resource.RLIM_INFINITY else soft


def connection_capacity(configured: int) -> int:
    """How many client connections a worker may hold: `configured`, at most what its open-files limit leaves."""
    return max(1, min(configured, soft_limit() - limits.RESERVED_FILES))


def log_limit(before: int, after: int, configured: int) -> None:
    """The start-up story's line: the open-files limit, and the connections it lets each worker hold."""
    capacity = connection_capacity(configured)
    extra = {"open_files_limit": after, "connections_per_worker": capacity}
    if after > before:
        log.info(
            "Open-files limit raised from %s to %s (the hard limit): up to %s connections per worker",
            before,
            after,
            capacity,
            extra=extra,
        )
    else:
        log.info("Open-files limit %s: up to %s connections per worker", after, capacity, extra=extra)
