"""A granian cluster's stop, phase by phase, as deadlines of the master's loop (supervisor.py).

On SIGTERM (SIGINT or a second SIGTERM skips the lame duck):
1. lame duck (SHUTDOWN_DELAY s): serve on, with `Connection: close` on every
   answer (wsgi.py) and /health/ready failing, so proxies move away;
2. drain: new connection attempts are dropped (cluster/drain.py) while the
   workers accept every queued one, then read what they accepted;
3. the workers are told to stop and finish what they hold in the rest of
   GRACEFUL_TIMEOUT; any still running then is killed, and the log says so once.
"""

import contextlib
import logging
import math
import os
import signal
import time

from ..cluster import drain
from ..cluster.board import Board
from ..settings import Settings
from .listener import Listener

log = logging.getLogger(__name__)

# How often the loop looks at the accept queue while the workers empty it.
DRAIN_POLL_SECONDS = 0.02
# After the queue is empty, the workers read what they just accepted before they are told to stop:
# a connection granian accepted but has not read yet counts as idle, and a stop closes idle connections.
DRAIN_SETTLE_SECONDS = 0.2


class Stop:
    """Where the cluster's stop is ("serving", "lame duck", "draining", "stopping", "stopped") and its deadlines."""

    def __init__(self, settings: Settings, board: Board, listener: Listener):
        self.settings = settings
        self.board = board
        self.listener = listener
        self.phase = "serving"
        self.lame_duck_until = self.drain_until = self.settled_at = self.deadline = 0.0
        self.queued_at_drain = 0
        # Whether the drain refuses new connections (not on every platform).
        self.refusing = False
        # Workers killed at the deadline, or found killed while stopping.
        self.forced: set[int] = set()

    @property
    def winding_down(self) -> bool:
        """Stopping, but the workers not told yet (lame duck, drain): a dead worker may still be replaced."""
        return self.phase in ("lame duck", "draining")

    @property
    def workers_told(self) -> bool:
        """The workers were told to stop: none is replaced."""
        return self.phase in ("stopping", "stopped")

    def begin(self, skip_delay: bool, workers: dict) -> None:
        """A stop signal: the lame duck, or straight to the drain when asked twice or by Ctrl-C."""
        now = time.monotonic()
        if self.phase == "serving":
            self.board.set_stopping(time.time())
            delay = self.settings.shutdown_delay
            if delay and not skip_delay:
                self.phase = "lame duck"
                self.lame_duck_until = now + delay
                log.info(
                    "Stopping: serving %ss more with Connection: close and /health/ready failing, "
                    "so proxies move away (SHUTDOWN_DELAY)",
                    delay,
                    extra={"phase": "lame duck", "shutdown_delay_s": delay},
                )
                return
            self._start_drain(now, workers)
        elif self.phase == "lame duck":
            log.info("Stopping now: a second signal skips the rest of SHUTDOWN_DELAY")
            self._start_drain(now, workers)

    def give_up(self, workers: dict) -> None:
        """Stop at once, for a reason the caller logged: the workers get GRACEFUL_TIMEOUT to finish."""
        self.board.set_stopping(time.time())
        self.drain_until = time.monotonic() + self.settings.graceful_timeout
        self._tell_workers(time.monotonic(), workers)

    def seconds_to_deadline(self) -> float | None:
        """How long until this stop has something to do (None: nothing due)."""
        now = time.monotonic()
        if self.phase == "lame duck":
            return self.lame_duck_until - now
        if self.phase == "draining":
            return DRAIN_POLL_SECONDS
        if self.phase == "stopping":
            return self.deadline - now
        return None

    def advance(self, workers: dict, left_early: int) -> None:
        """Move the stop along on a pass of the loop; `workers` are the live ones (pid -> supervisor.Worker)."""
        now = time.monotonic()
        if left_early and self.winding_down and not workers:
            log.info(
                "Stopping now: every worker stopped on the stop signal (sent to the whole process group)",
                extra={"workers_left_early": left_early},
            )
            self.phase = "stopped"
        elif self.phase == "lame duck" and now >= self.lame_duck_until:
            self._start_drain(now, workers)
        elif self.phase == "draining":
            self._drain(now, workers)
        elif self.phase == "stopping":
            self._finish(now, workers)

    def _start_drain(self, now: float, workers: dict) -> None:
        """Drop new connection attempts; the workers keep accepting the queued ones."""
        self.phase = "draining"
        self.drain_until = now + self.settings.graceful_timeout
        self.settled_at = 0.0
        if drain.refuse_new_connections([self.listener]):
            self.refusing = True
            self.queued_at_drain = drain.backlog([self.listener])
            return
        log.warning("New connections cannot be refused on this platform: stopping without the drain")
        self._tell_workers(now, workers)

    def _drain(self, now: float, workers: dict) -> None:
        left_over = drain.backlog([self.listener])
        if left_over and now < self.drain_until:
            self.settled_at = 0.0
            return
        if left_over:
            log.warning("%s queued connections were not accepted before the graceful timeout", left_over)
        elif not self.settled_at:
            self.settled_at = now + DRAIN_SETTLE_SECONDS
            return
        elif now < self.settled_at and now < self.drain_until:
            return
        self._tell_workers(now, workers)

    def _tell_workers(self, now: float, workers: dict) -> None:
        """Hand over to the workers' graceful stop with what is left of GRACEFUL_TIMEOUT."""
        left = max(1, math.ceil(self.drain_until - now))
        self.phase = "stopping"
        self.deadline = now + left
        extra = {"graceful_timeout_s": self.settings.graceful_timeout}
        if self.refusing:
            log.info(
                "Stopping: new connections refused, %s queued ones handed to workers; %ss left for requests in flight",
                self.queued_at_drain,
                left,
                extra={**extra, "queued": self.queued_at_drain},
            )
        else:
            log.info("Stopping: %ss left for requests in flight", left, extra=extra)
        self.board.set_workers_stopped(time.time())
        for worker in workers.values():
            _signal(worker.pid, signal.SIGTERM)

    def _finish(self, now: float, workers: dict) -> None:
        if not workers:
            self._say_who_was_forced()
            self.phase = "stopped"
        elif now >= self.deadline:
            for worker in workers.values():
                if not worker.killed:
                    worker.killed = True
                    self.forced.add(worker.pid)
                    _signal(worker.pid, signal.SIGKILL)

    def _say_who_was_forced(self) -> None:
        if self.forced:
            log.warning(
                "Killed %s %s still busy when GRACEFUL_TIMEOUT=%ss ran out",
                len(self.forced),
                "worker" if len(self.forced) == 1 else "workers",
                self.settings.graceful_timeout,
                extra={"forced": True, "worker_pids": sorted(self.forced)},
            )


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
