"""The master's checks on every worker, once a second: memory, and requests stuck too long.

Both are enforced from the master because a worker cannot be trusted to check
itself: one stuck in a runaway request never reaches its own check.

- Memory (uWSGI's evil-reload-on-rss): the master measures each worker's
  unique memory (USS), so pages shared with the master after fork do not count
  against it. A worker over the limit is sent SIGTERM and finishes its requests.
- Stuck requests: gunicorn's own timeout watches a worker's heartbeat, which a
  gthread or gevent worker keeps beating while one of its requests hangs. The
  board says how long each worker's app has worked on its oldest request
  (a client's download does not count). Past REQUEST_TIMEOUT the worker is
  recycled, not killed: SIGTERM stops it taking new connections and lets it
  finish the requests it holds beside the stuck one. Once the stuck request
  is all it holds, or GRACEFUL_TIMEOUT later, it is aborted (SIGABRT logs
  its stacks first). The worker's other requests are not cut with it.
  A sync worker beats only between requests, so there gunicorn's timeout is
  the request timeout; the watchdog names the request of each worker it aborts.
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
    """Recycles workers over their memory limit, and recycles then aborts workers stuck on a request."""

    def __init__(self, board: Board, limit_mb: int, graceful_timeout: float):
        self.board = board
        self.limit_mb = limit_mb
        self.graceful_timeout = graceful_timeout
        # pid -> (why it was asked to stop, when, how long it may take)
        self.stopping: dict[int, tuple[str, float, float]] = {}
        self.next_check = 0.0

    def check(self, workers: dict, request_timeout: float) -> None:
        """Look at every worker, at most once per CHECK_INTERVAL."""
        now = time.monotonic()
        if now < self.next_check:
            return
        self.next_check = now + CHECK_INTERVAL
        for pid, worker in list(workers.items()):
            if pid in self.stopping:
                self._follow_up(pid, worker, request_timeout, now)
            elif request_timeout and self._stuck_for(worker) > request_timeout:
                self._recycle_stuck(pid, worker, request_timeout, now)
            else:
                self._recycle_if_over_memory(pid, worker, now)

    def name_heartbeat_timeouts(self, workers: dict, check_heartbeats) -> None:
        """Run gunicorn's heartbeat check, then name the request each worker it aborted was working on.

        Under sync, gunicorn's timeout is the request timeout, and its own line
        names only the pid. The requests are read before the check: an aborted
        worker may exit, and be reaped, before the check returns.
        """
        watched = {
            pid: (worker, self._stuck_request(worker) if self._stuck_for(worker) else None)
            for pid, worker in workers.items()
            if not compat.was_aborted(worker)
        }
        check_heartbeats()
        for pid, (worker, request) in watched.items():
            if compat.was_aborted(worker):
                self._log_heartbeat_timeout(pid, worker, request)

    def _log_heartbeat_timeout(self, pid: int, worker, request: dict | None) -> None:
        fields = {"worker": worker.slot + 1, "worker_pid": pid}
        if request is None:
            log.critical(
                "Worker %s (pid %s) missed its heartbeat between requests: gunicorn's timeout aborted it",
                worker.slot + 1,
                pid,
                extra=fields,
            )
            return
        log.critical(
            "Worker %s (pid %s) has worked on %s %s (request id %s) past gunicorn's timeout: aborting it",
            worker.slot + 1,
            pid,
            request["method"],
            request["path"],
            request["request_id"],
            extra={**fields, **request},
        )
        metrics.record_abort()

    def _stuck_for(self, worker) -> float:
        since = self.board.busy_since(worker.slot)
        return time.time() - since if since else 0.0

    def _stuck_request(self, worker) -> dict:
        method, path, request_id = [*self.board.busy_label(worker.slot).split(" ", 2), "-", "-", "-"][:3]
        return {"method": method, "path": path, "request_id": request_id}

    def _recycle_stuck(self, pid: int, worker, request_timeout: float, now: float) -> None:
        """SIGTERM: the worker takes no new connections and finishes its other requests; the abort comes later."""
        request = self._stuck_request(worker)
        others = max(0, self.board.in_flight(worker.slot) - 1)
        log.error(
            "Worker %s (pid %s) has worked on %s %s (request id %s) for over %ss (REQUEST_TIMEOUT): recycling it; "
            "it takes no new connections, finishes its %s other requests, and is aborted once the stuck one "
            "is all it holds (in %ss at most: GRACEFUL_TIMEOUT)",
            worker.slot + 1,
            pid,
            request["method"],
            request["path"],
            request["request_id"],
            request_timeout,
            others,
            self.graceful_timeout,
            extra={"worker": worker.slot + 1, "worker_pid": pid, **request, "other_requests": others},
        )
        self.stopping[pid] = ("stuck", now, self.graceful_timeout)
        _signal(pid, signal.SIGTERM)

    def _abort(self, pid: int, worker, request_timeout: float, now: float) -> None:
        request = self._stuck_request(worker)
        log.critical(
            "Worker %s (pid %s) has worked on %s %s (request id %s) for over %ss (REQUEST_TIMEOUT): aborting it",
            worker.slot + 1,
            pid,
            request["method"],
            request["path"],
            request["request_id"],
            request_timeout,
            extra={"worker": worker.slot + 1, "worker_pid": pid, **request},
        )
        compat.mark_aborted(worker)
        metrics.record_abort()
        self.stopping[pid] = ("aborted", now, ABORT_GRACE)
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
        metrics.record_recycle()
        self.stopping[pid] = ("memory", now, self.graceful_timeout)
        _signal(pid, signal.SIGTERM)

    def _follow_up(self, pid: int, worker, request_timeout: float, now: float) -> None:
        """A worker asked to stop: abort a stuck one once its other requests are done; kill any that overstays."""
        why, asked, allowed = self.stopping[pid]
        overdue = now - asked > allowed
        # A stuck request may still end by itself: the worker then exits as any recycled one does.
        still_stuck = why == "stuck" and self._stuck_for(worker) > request_timeout
        if still_stuck and (overdue or self.board.in_flight(worker.slot) == 1):
            self._abort(pid, worker, request_timeout, now)
        elif overdue:
            log.error("Worker pid %s did not exit within %ss of being asked to: killing it", pid, allowed)
            _signal(pid, signal.SIGKILL)
            self.stopping[pid] = (why, now, float("inf"))

    def forget(self, pid: int) -> str | None:
        """Drop a dead worker; say why the watchdog had asked it to stop ("memory", "stuck", "aborted"), if it had."""
        why, _, _ = self.stopping.pop(pid, (None, 0.0, 0.0))
        return why


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
