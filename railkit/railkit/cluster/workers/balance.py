"""Accepts shared out between workers: one that holds well over its share of connections lets the others accept.

Every worker waits on the same listening socket, and the kernel wakes the
workers in an order that favours some: at 2,500 clients, five workers held
from 250 to 700 connections each. Each worker publishes how many it holds,
in memory every worker shares (made in the master, before the fork), and
stops accepting while it holds more than ACCEPT_SHARE times the mean plus
ACCEPT_SLACK. The worker holding the fewest is never over it, so someone
always accepts.
"""

import mmap

from ..board import MAX_SLOTS

# A worker stops accepting while it holds more than this many times the mean, plus ACCEPT_SLACK.
ACCEPT_SHARE = 1.2
ACCEPT_SLACK = 16

# One count per board slot; made at import, in the master, so every forked worker shares it.
_shared = mmap.mmap(-1, MAX_SLOTS * 4)
_counts = memoryview(_shared).cast("i")


class AcceptShare:
    """This worker's count among its siblings', by board slot."""

    def __init__(self, slot: int | None, workers: int):
        self.slot = slot if slot is not None and 0 <= slot < MAX_SLOTS else None
        self.workers = max(1, min(workers, MAX_SLOTS))
        if self.slot is not None:
            _counts[self.slot] = 0

    def over_share(self, connections: int) -> bool:
        """Publish `connections`; whether this worker holds too many to accept more now."""
        if self.slot is None or self.workers == 1:
            return False
        _counts[self.slot] = connections
        mean = sum(_counts[: self.workers]) / self.workers
        return connections > mean * ACCEPT_SHARE + ACCEPT_SLACK
