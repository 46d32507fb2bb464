"""The granian master's loop: the workers kept, replaced, recycled and stopped as the gunicorn cluster's are.

The kernel queues each signal into a pipe (signal.set_wakeup_fd), so the
handlers do nothing and the loop handles every signal by name on its next
pass. It wakes on a signal, on a worker's death (SIGCHLD) or at its next
deadline, and never sleeps inside a step. Each pass it reaps dead workers
(saying why each died, backing off when they die young, giving up after too
many: cluster/lifecycle.py), runs the watchdog (memory, stuck requests:
cluster/watchdog.py), retires a worker that served its MAX_REQUESTS, moves a
stop along (stopping.py) and forks what is missing. A retiring worker
finishes its requests while its replacement already serves: every worker
accepts from one socket, so nothing queued is lost. A worker that stops on a
stop signal of its own (sent to the whole process group) is not replaced;
once none is left, the master stops at once.
"""

import contextlib
import logging
import os
import random
import select
import signal
import time
from dataclasses import dataclass

from ..cluster import board as scoreboard
from ..cluster import limits, metrics
from ..cluster.lifecycle import CrashGuard, Death, log_death
from ..cluster.watchdog import WorkerWatchdog
from ..settings import Settings
from . import joined
from . import worker as worker_start
from .listener import Listener
from .stopping import Stop

log = logging.getLogger(__name__)

# Exit status when the master gives up: workers keep dying young, or no board slot is left.
EXIT_GAVE_UP = 1
# The loop never sleeps longer than this between passes, nor shorter.
MAX_WAIT_SECONDS = 1.0
MIN_WAIT_SECONDS = 0.005
# Signals the loop handles; each is dispatched to handle_<name>.
HANDLED_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGCHLD,
)
# Why the supervisor asked a worker to stop, in the death line's words.
RETIRED_FOR = {"requests": "max_requests", "reload": "SIGHUP", "fewer": "SIGTTOU"}


@dataclass(eq=False)
class Worker:
    """One worker process, as the supervisor (and the watchdog) know it."""

    process: object
    slot: int
    pid: int
    started: float
    # Requests after which it is retired: MAX_REQUESTS plus its own jitter.
    max_requests: int = 0
    # Set by the watchdog (gunicorn_compat.mark_aborted) when it aborts the worker.
    aborted: bool = False
    # Why the supervisor asked it to stop, if it did (RETIRED_FOR), and by when it must be gone (monotonic).
    retiring: str | None = None
    retire_by: float = 0.0
    killed: bool = False


def exit_status(exitcode: int | None) -> str:
    """multiprocessing's exit code as "exit code N" or the signal's name, as lifecycle.describe_status says it."""
    if exitcode is None:
        return "unknown status"
    if exitcode >= 0:
        return f"exit code {exitcode}"
    try:
        return signal.Signals(-exitcode).name
    except ValueError:
        return f"signal {-exitcode}"


class Supervisor:
    """The master's workers and deadlines, from the first fork to the last exit."""

    def __init__(self, settings: Settings, workers: int, board: scoreboard.Board, listener: Listener, fork):
        """`fork(slot)` forks one worker and returns its multiprocessing.Process."""
        self.settings = settings
        self.configured = workers
        self.board = board
        self.listener = listener
        self.fork = fork
        self.workers: dict[int, Worker] = {}
        self.crashes = CrashGuard()
        self.watchdog = WorkerWatchdog(board, settings.worker_max_memory_mb, settings.graceful_timeout)
        self.stop = Stop(settings, board, listener)
        self.left_early = 0
        self.exit_code = 0
        self.wakeup_read, self.wakeup_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    # -- the loop -------------------------------------------------------------

    def run(self) -> int:
        """Fork the workers, keep them, stop them; the master's exit status."""
        self._install_signals()
        self.spawn_missing()
        while self.stop.phase != "stopped":
            self._wait(self.seconds_to_next_deadline())
            self.handle_signals()
            self.reap()
            self.tick()
            self.spawn_missing()
        return self.exit_code

    def _install_signals(self) -> None:
        signal.set_wakeup_fd(self.wakeup_write, warn_on_full_buffer=False)
        for signum in HANDLED_SIGNALS:
            signal.signal(signum, _queued)
        # A forked worker starts with its own signal plumbing, not the master's.
        os.register_at_fork(after_in_child=self._forget_in_worker)

    def _forget_in_worker(self) -> None:
        worker_start.at_fork()
        os.close(self.wakeup_read)
        os.close(self.wakeup_write)

    def _wait(self, timeout: float) -> None:
        with contextlib.suppress(InterruptedError):
            select.select([self.wakeup_read], [], [], timeout)

    def handle_signals(self) -> None:
        """Each queued signal, by name: handle_term, handle_int, ..."""
        try:
            queued = os.read(self.wakeup_read, 4096)
        except BlockingIOError:
            return
        for number in queued:
            with contextlib.suppress(ValueError):  # only HANDLED_SIGNALS have handlers that queue
                name = signal.Signals(number).name.removeprefix("SIG").lower()
                getattr(self, f"handle_{name}", lambda: None)()

    def seconds_to_next_deadline(self) -> float:
        due = [MAX_WAIT_SECONDS]
        backoff = self.crashes.seconds_until_spawn()
        if backoff > 0:
            due.append(backoff)
        stop = self.stop.seconds_to_deadline()
        if stop is not None:
            due.append(stop)
        return max(MIN_WAIT_SECONDS, min(due))

    # -- each pass ------------------------------------------------------------

    def tick(self) -> None:
        """Run the watchdog, retire workers past their request count, fold dead workers' metrics; move a stop along."""
        self.watchdog.check(self.workers, self.settings.request_timeout)
        metrics.fold_dead_workers(alive=self.workers)
        if self.stop.phase == "serving":
            self._retire_after_max_requests()
        self._kill_overdue_retirees(time.monotonic())
        self.stop.advance(self.workers, self.left_early)

    def serving(self) -> list[Worker]:
        """Workers not asked to stop: the ones that count toward the configured number."""
        asked = self.watchdog.stopping
        return [worker for worker in self.workers.values() if not worker.retiring and worker.pid not in asked]

    def spawn_missing(self) -> None:
        """Fork workers until the configured number serve, unless stopping or backing off."""
        if self.stop.workers_told or self.left_early:
            return
        while len(self.serving()) < self.configured and self.crashes.seconds_until_spawn() <= 0:
            slot = self.board.free_slot({worker.slot for worker in self.workers.values()})
            if slot is None:
                self._give_up(f"all {scoreboard.MAX_SLOTS} worker slots are taken; lower WEB_CONCURRENCY")
                return
            worker_start.assign_slot(slot)
            process = self.fork(slot)
            worker = Worker(process, slot, process.pid, time.time(), limits.MAX_REQUESTS + _jitter())
            self.workers[worker.pid] = worker
            metrics.record_worker_start()

    def reap(self) -> None:
        """Every worker that died since the last pass: its death logged and counted, and what it means."""
        for pid, worker in list(self.workers.items()):
            exitcode = worker.process.exitcode
            if exitcode is None:
                continue
            del self.workers[pid]
            self._bury(worker, exit_status(exitcode))

    def _bury(self, worker: Worker, status: str) -> None:
        self.board.release(worker.slot)
        stopped_for = self.watchdog.forget(worker.pid)
        death = Death(
            status=status,
            lifetime=time.time() - worker.started,
            timed_out=worker.aborted or stopped_for == "stuck",
            over_memory=stopped_for == "memory",
            shutting_down=self.stop.workers_told,
            stopping=self.stop.winding_down,
            overdue=worker.killed,
        )
        metrics.forget_worker(worker.pid)
        metrics.record_death(death)
        if worker.retiring and not death.shutting_down and status == "exit code 0":
            log.info(
                "Worker %s retired (pid %s, lived %.1fs): %s",
                worker.slot + 1,
                worker.pid,
                death.lifetime,
                RETIRED_FOR[worker.retiring],
                extra={"worker": worker.slot + 1, "worker_pid": worker.pid, "status": status, "cause": death.cause},
            )
            return
        log_death(worker.slot + 1, worker.pid, death)
        if death.shutting_down:
            if status == "SIGKILL":
                self.stop.forced.add(worker.pid)
            return
        if death.kind == "early":
            self.left_early += 1
            return
        self.crashes.record(death)
        if self.crashes.exhausted:
            self._give_up(
                f"{self.crashes.streak} workers died within seconds of starting (last: {death.cause}); "
                "giving up so the platform's restart policy can take over"
            )
            return
        delay = self.crashes.seconds_until_spawn()
        if delay:
            log.warning("Workers keep dying young: waiting %.1fs before the next one", delay)
            metrics.record_backoff(delay)

    def _retire_after_max_requests(self) -> None:
        """A worker that served MAX_REQUESTS (and its jitter) is replaced: a leak cannot grow forever."""
        served = {row.index: row.requests for row in self.board.workers()}
        for worker in self.serving():
            if served.get(worker.slot, 0) >= worker.max_requests:
                self._retire(worker, "requests")

    def _retire(self, worker: Worker, why: str) -> None:
        """Ask a worker to finish what it holds and exit within GRACEFUL_TIMEOUT; its replacement is forked at once."""
        worker.retiring = why
        worker.retire_by = time.monotonic() + self.settings.graceful_timeout
        _signal(worker.pid, signal.SIGTERM)

    def _kill_overdue_retirees(self, now: float) -> None:
        for worker in self.workers.values():
            if worker.retiring and not worker.killed and now > worker.retire_by:
                log.error(
                    "Worker pid %s did not exit within %ss of being asked to: killing it",
                    worker.pid,
                    self.settings.graceful_timeout,
                )
                worker.killed = True
                _signal(worker.pid, signal.SIGKILL)

    # -- signals --------------------------------------------------------------

    def handle_term(self) -> None:
        """SIGTERM: the lame duck first; a second one skips the rest of it."""
        self.stop.begin(skip_delay=self.stop.phase == "lame duck", workers=self.workers)

    def handle_int(self) -> None:
        """SIGINT (Ctrl-C): stop without the lame duck, the drain kept."""
        self.stop.begin(skip_delay=True, workers=self.workers)

    handle_quit = handle_int

    def handle_hup(self) -> None:
        """SIGHUP: replace every worker (the app stays as the master loaded it)."""
        if self.stop.phase != "serving":
            return
        log.info("Replacing the %s workers (SIGHUP); the app is not loaded again", len(self.serving()))
        for worker in self.serving():
            self._retire(worker, "reload")

    def handle_ttin(self) -> None:
        """SIGTTIN: one more worker, unless the joined work refuses it (its database pool would not fit)."""
        wanted = joined.nworkers_changed(self.configured + 1, self.configured)
        if wanted <= self.configured:
            return
        self.configured = wanted
        self.board.set_configured(self.configured)
        log.info("Workers: %s (SIGTTIN)", self.configured, extra={"workers": self.configured})

    def handle_ttou(self) -> None:
        """SIGTTOU: one worker fewer, never none; the newest finishes what it holds and exits."""
        if self.configured <= 1:
            return
        self.configured = joined.nworkers_changed(self.configured - 1, self.configured)
        self.board.set_configured(self.configured)
        log.info("Workers: %s (SIGTTOU)", self.configured, extra={"workers": self.configured})
        serving = sorted(self.serving(), key=lambda worker: worker.started)
        if len(serving) > self.configured:
            self._retire(serving[-1], "fewer")

    def handle_usr1(self) -> None:
        """SIGUSR1 (gunicorn: reopen log files): the logs go to stdout, nothing to reopen."""

    def handle_usr2(self) -> None:
        """SIGUSR2 (gunicorn: a binary upgrade): granian has none; left to its default, it would kill the master."""
        log.warning("SIGUSR2 ignored: a granian cluster has no binary upgrade (redeploy instead)")

    def handle_chld(self) -> None:
        """A worker died: the pass reaps it."""

    def _give_up(self, reason: str) -> None:
        """Stop the cluster loudly: its exit status tells the platform's restart policy."""
        log.error("Stopping the cluster: %s", reason)
        self.exit_code = EXIT_GAVE_UP
        self.stop.give_up(self.workers)


def _queued(_signum, _frame) -> None:
    """The kernel already wrote the signal to the loop's pipe (set_wakeup_fd); nothing else to do here."""


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _jitter() -> int:
    # So that workers started together do not all retire together.
    return random.randint(0, limits.MAX_REQUESTS_JITTER)
