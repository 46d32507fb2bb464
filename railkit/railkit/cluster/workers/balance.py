"""Accepts shared out between workers: one that holds well over its share of connections lets the others accept.

Every worker waits on the same listening socket, and the kernel wakes the
workers in an order that favours some: at 2,500 clients, five workers held
from 250 to 700 connections each. Each worker that accepts publishes how many
connections it holds in its slot of the board (shared memory), and stops
accepting while it holds more than ACCEPT_SHARE times the mean of the
accepting workers plus ACCEPT_SLACK. Only live workers that accept count,
whatever slot a reload or SIGTTIN gave them: the master clears a dead
worker's slot, and a worker that stops or pauses withdraws its count. The
accepting worker holding the fewest is never over the mean, so someone
always accepts.
"""

import time

from .. import board as scoreboard

# A worker stops accepting while it holds more than this many times the mean, plus ACCEPT_SLACK.
ACCEPT_SHARE = 1.2
ACCEPT_SLACK = 16
# How often a worker looks again for the highest slot in use (a new worker in a higher one counts from then).
RESCAN_SECONDS = 1.0


class AcceptShare:
    """This worker's count among its accepting siblings', on the board."""

    def __init__(self, board: scoreboard.Board | None, slot: int | None):
        self.board = board if slot is not None and 0 <= slot < scoreboard.MAX_SLOTS else None
        self.slot = slot
        self.span = 0
        self.rescan_at = 0.0

    def over_share(self, connections: int) -> bool:
        """Publish `connections`; whether this worker holds too many to accept more now."""
        if self.board is None:
            return False
        self.board.set_connections(self.slot, connections)
        now = time.monotonic()
        if now >= self.rescan_at:
            self.span = max(self.board.slots_in_use(), self.slot + 1)
            self.rescan_at = now + RESCAN_SECONDS
        counts = self.board.accepting_connections(self.span)
        if len(counts) < 2:
            return False
        return connections > sum(counts) / len(counts) * ACCEPT_SHARE + ACCEPT_SLACK

    def withdraw(self) -> None:
        """This worker does not accept (stopping, or paused): its count leaves the mean."""
        if self.board is not None:
            self.board.set_connections(self.slot, scoreboard.NOT_ACCEPTING)
