"""The master's checks on every worker, once a second: memory, and requests stuck too long.

Both are enforced from the master because a worker cannot be trusted to check
itself: one stuck in a runaway request never reaches its own check.

- Memory (uWSGI's evil-reload-on-rss): the master measures each worker's
  unique memory (USS), so pages shared with the master after fork do not count
  against it. A worker over the limit is sent SIGTERM and finishes its requests.
- Stuck requests: gunicorn's own timeout watches a worker's heartbeat, which a
  gthread or gevent worker keeps beating while one of its requests hangs. The
  board says how long each worker's app has worked on its oldest request
  (a client's download does not count); past REQUEST_TIMEOUT the worker is
  aborted (SIGABRT logs its stacks first).
"""

import contextlib
import logging
import os
import signal
import time

import psutil

from . import gunicorn_compat as compat
from . import metrics
from .board import Board

log = logging.getLogger(__name__)

# How often the master looks; gunicorn's loop wakes at least once a second.
CHECK_INTERVAL = 1.0
# How long an aborted worker has to log its stacks before it is killed.
ABORT_GRACE = 5.0


def unique_memory_mb(pid: int) -> float | None:
    """Memory only this process holds (USS), or None if it is gone."""
    try:
        return psutil.Process(pid).memory_full_info().uss / 2**20
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def resident_memory_mb(pid: int) -> float | None:
    """Resident memory (RSS, shared pages included), or None if it is gone."""
    try:
        return psutil.Process(pid).memory_info().rss / 2**20
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


class WorkerWatchdog:
    """Recycles workers over their memory limit and aborts workers stuck on a request."""

    def __init__(self, board: Board, limit_mb: int, graceful_timeout: float):
        self.board = board
        self.limit_mb = limit_mb
        self.graceful_timeout = graceful_timeout
        # pid -> (when it was asked to stop, how long it may take)
        self.stopping: dict[int, tuple[float, float]] = {}
        self.over_memory: set[int] = set()
        self.next_check = 0.0

    def check(self, workers: dict, request_timeout: float) -> None:
        """Look at every worker, at most once per CHECK_INTERVAL."""
        now = time.monotonic()
        if now < self.next_check:
            return
        self.next_check = now + CHECK_INTERVAL
        for pid, worker in list(workers.items()):
            if pid in self.stopping:
                self._kill_if_overdue(pid, now)
            elif request_timeout and self._stuck_for(worker) > request_timeout:
                self._abort(pid, worker, request_timeout, now)
            else:
                self._recycle_if_over_memory(pid, worker, now)

    def _stuck_for(self, worker) -> float:
        since = self.board.busy_since(worker.slot)
        return time.time() - since if since else 0.0

    def _abort(self, pid: int, worker, request_timeout: float, now: float) -> None:
        method, path, request_id = [*self.board.busy_label(worker.slot).split(" ", 2), "-", "-", "-"][:3]
        log.critical(
            "Worker %s (pid %s) has worked on %s %s (request id %s) for over %ss (REQUEST_TIMEOUT): aborting it",
            worker.slot + 1,
            pid,
            method,
            path,
            request_id,
            request_timeout,
            extra={
                "worker": worker.slot + 1,
                "worker_pid": pid,
                "method": method,
                "path": path,
                "request_id": request_id,
            },
        )
        compat.mark_aborted(worker)
        metrics.record_abort()
        self.stopping[pid] = (now, ABORT_GRACE)
        _signal(pid, signal.SIGABRT)

    def _recycle_if_over_memory(self, pid: int, worker, now: float) -> None:
        used = unique_memory_mb(pid)
        if used is None or used <= self.limit_mb:
            return
        log.warning(
            "Worker %s (pid %s) uses %.0f MB, over its %s MB limit: recycling it gracefully",
            worker.slot + 1,
            pid,
            used,
            self.limit_mb,
            extra={"worker": worker.slot + 1, "worker_pid": pid, "memory_mb": round(used)},
        )
        self.over_memory.add(pid)
        metrics.record_recycle()
        self.stopping[pid] = (now, self.graceful_timeout)
        _signal(pid, signal.SIGTERM)

    def _kill_if_overdue(self, pid: int, now: float) -> None:
        asked, allowed = self.stopping[pid]
        if now - asked > allowed:
            log.error("Worker pid %s did not exit within %ss of being asked to: killing it", pid, allowed)
            _signal(pid, signal.SIGKILL)
            self.stopping[pid] = (now, float("inf"))

    def forget(self, pid: int) -> bool:
        """Drop a dead worker, and say whether it was recycled for its memory."""
        self.stopping.pop(pid, None)
        if pid in self.over_memory:
            self.over_memory.discard(pid)
            return True
        return False


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
