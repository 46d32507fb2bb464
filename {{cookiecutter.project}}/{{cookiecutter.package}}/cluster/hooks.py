"""gunicorn's server hooks: the cluster's start-up story, deaths, limits and stats.

gunicorn.conf.py builds one ClusterHooks and hands its methods to gunicorn.
Methods named for master-side hooks run in the master; post_fork,
post_worker_init, pre_request, post_request and worker_abort run in a worker.
"""

import faulthandler
import gc
import itertools
import logging
import math
import signal
import sys
import threading
import time
import traceback

from gunicorn.errors import HaltServer

from ..settings import Settings
from . import board as scoreboard
from . import limits, metrics
from .drain import drain
from .errors import answer_protocol_errors_as_problems
from .lifecycle import CrashGuard, Death, ExitRecorder
from .rate_limit_scope import log_rate_limit_scope
from .sizing import ClusterSize
from .watchdog import WorkerWatchdog

log = logging.getLogger(__name__)

# Exit status when the master gives up on workers that keep dying.
EXIT_CRASH_LOOP = 1


class ClusterHooks:
    """The state the hooks share, and the hooks themselves."""

    def __init__(self, settings: Settings, size: ClusterSize):
        self.settings = settings
        self.size = size
        self.exits = ExitRecorder()
        self.crashes = CrashGuard()
        # Made in on_starting, in the master, and inherited by every worker.
        self.board: scoreboard.Board | None = None
        self.watchdog: WorkerWatchdog | None = None
        # A worker's own: its requests in flight (oldest first) and its count.
        self.in_flight: dict[int, float] = {}
        self.served = itertools.count(1)
        self.connection_quota = limits.MAX_REQUESTS_PER_CONNECTION if settings.worker_class == "gthread" else None

    # -- master ---------------------------------------------------------------

    def on_starting(self, server) -> None:
        """Tell the start-up story and prepare the master's machinery."""
        install_exception_logging()
        logging.getLogger("gunicorn.error").addFilter(self.exits)
        self.board = scoreboard.Board.create(scoreboard.runtime_dir(self.settings.port) / "workers.board")
        self.board.set_master(server.pid, self.size.workers)
        scoreboard.attach(self.board)
        self.watchdog = WorkerWatchdog(self.board, self.settings.worker_max_memory_mb, self.settings.graceful_timeout)
        server.cluster = self
        self._take_over_master_loop(server)

        mode = "cluster mode" if self.size.workers > 1 else "single-process mode"
        log.info("Master process starting %s (pid %s)", mode, server.pid, extra={"mode": mode})
        log.info(
            "CPU cores detected: %g (%s); memory: %.0f MB (%s)",
            self.size.cpus.value,
            self.size.cpus.source,
            self.size.memory_mb.value,
            self.size.memory_mb.source,
            extra={"cpus": self.size.cpus.value, "memory_mb": round(self.size.memory_mb.value)},
        )
        log.info(
            "Starting %s workers for load balancing: %s",
            self.size.workers,
            self.size.reason,
            extra={"workers": self.size.workers, "threads": self.size.threads, "plan": self.settings.plan.name},
        )
        log_rate_limit_scope(self.settings, self.size.workers)

    def on_reload(self, server) -> None:
        """Carry the master's machinery over to the hooks of the re-read config (SIGHUP)."""
        previous = server.cluster
        self.board, self.watchdog = previous.board, previous.watchdog
        self.exits, self.crashes = previous.exits, previous.crashes
        self.board.set_configured(self.size.workers)
        server.cluster = self
        log.info("Configuration reloaded: replacing the workers with %s new ones", self.size.workers)

    @staticmethod
    def _take_over_master_loop(server) -> None:
        # The wrappers below read server.cluster, the hooks of the current
        # config, which a SIGHUP reload replaces.

        # gunicorn has no periodic master hook; its loop calls murder_workers()
        # at least once a second, so the watchdog's checks ride along with it.
        check_heartbeats = server.murder_workers

        def murder_workers():
            check_heartbeats()
            server.cluster.watchdog.check(server.WORKERS, server.timeout)

        server.murder_workers = murder_workers

        # On SIGTERM, and on Ctrl-C (SIGINT), which gunicorn would treat as a
        # quick stop: first hand every queued connection to a worker, then let
        # gunicorn stop gracefully with what is left of the graceful timeout.
        stop_gracefully = server.handle_term

        def handle_term():
            graceful_timeout = server.cluster.settings.graceful_timeout
            started = time.monotonic()
            queued = drain(server.LISTENERS, graceful_timeout)
            left = max(1, math.ceil(graceful_timeout - (time.monotonic() - started)))
            server.cfg.set("graceful_timeout", left)
            log.info(
                "Stopping: new connections refused, %s queued ones handed to workers; %ss left for requests in flight",
                queued,
                left,
                extra={"queued": queued},
            )
            stop_gracefully()

        server.handle_term = server.handle_int = handle_term

    def when_ready(self, server) -> None:
        """Freeze the preloaded app's objects so forked workers keep sharing them."""
        gc.freeze()
        log.info("Listening on port %s", self.settings.port)

    def pre_fork(self, server, worker) -> None:
        """Pick the worker's slot, and back off while workers keep dying young."""
        taken = {other.slot for other in server.WORKERS.values()}
        worker.slot = next(index for index in range(scoreboard.MAX_SLOTS) if index not in taken)
        delay = self.crashes.delay()
        if delay:
            log.warning("Workers keep dying young: waiting %.1fs before the next one", delay)
            metrics.record_backoff(delay)
            _wait_unless_signalled(server, delay)
        worker.started = time.time()
        metrics.record_worker_start()

    def child_exit(self, server, worker) -> None:
        """Log a dead worker's cause; give up if workers keep dying at start."""
        self.board.release(worker.slot)
        death = Death(
            status=self.exits.pop(worker.pid),
            lifetime=time.time() - worker.started,
            timed_out=worker.aborted,
            over_memory=self.watchdog.forget(worker.pid),
            shutting_down=not server.LISTENERS,
        )
        metrics.forget_worker(worker.pid)
        metrics.record_death(death)
        level = logging.INFO if death.intended else logging.WARNING
        log.log(
            level,
            "Worker %s died (pid %s, %s, lived %.1fs): %s",
            worker.slot + 1,
            worker.pid,
            death.status,
            death.lifetime,
            death.cause,
            extra={
                "worker": worker.slot + 1,
                "worker_pid": worker.pid,
                "status": death.status,
                "lifetime_s": round(death.lifetime, 3),
                "cause": death.cause,
            },
        )
        if death.shutting_down:
            return
        self.crashes.record(death)
        if self.crashes.exhausted:
            reason = (
                f"{self.crashes.streak} workers died within seconds of starting (last: {death.cause}); "
                "giving up so the platform's restart policy can take over"
            )
            log.error("Stopping the cluster: %s", reason)
            raise HaltServer(reason, EXIT_CRASH_LOOP)

    def on_exit(self, server) -> None:
        """Say so when shutdown had to kill workers that outlived the graceful timeout."""
        if server.WORKERS:
            log.warning(
                "Killed %s workers still busy when GRACEFUL_TIMEOUT=%ss ran out",
                len(server.WORKERS),
                self.settings.graceful_timeout,
                extra={"forced": True, "worker_pids": sorted(server.WORKERS)},
            )
        metrics.remove_folder()

    def nworkers_changed(self, server, new_value, old_value) -> None:
        if self.board:
            self.board.set_configured(new_value)

    # -- worker ---------------------------------------------------------------

    def post_fork(self, server, worker) -> None:
        """Make the worker's failures loud and logged, and its protocol errors problem+json."""
        faulthandler.enable()
        install_exception_logging()
        answer_protocol_errors_as_problems()

    def post_worker_init(self, worker) -> None:
        """Put the worker on the board once it can serve; make Ctrl-C drain it."""
        self.board.claim(worker.slot, worker.pid)
        signal.signal(signal.SIGINT, worker.handle_exit)
        log.info(
            "Worker %s started (pid %s)",
            worker.slot + 1,
            worker.pid,
            extra={"worker": worker.slot + 1, "worker_pid": worker.pid},
        )

    def pre_request(self, worker, req) -> None:
        """Note when the request started, so the master can spot one that hangs."""
        if self.connection_quota and req.req_number >= self.connection_quota:
            req.must_close = True
        self.in_flight[id(req)] = time.time()
        self.board.set_busy_since(worker.slot, next(iter(self.in_flight.values())))

    def post_request(self, worker, req, environ, resp) -> None:
        """Count the request and clear it from the requests in flight."""
        self.in_flight.pop(id(req), None)
        self.board.set_busy_since(worker.slot, next(iter(self.in_flight.values()), 0.0))
        self.board.set_requests(worker.slot, next(self.served))

    def worker_exit(self, server, worker) -> None:
        """Say so when a worker leaves requests unfinished (its graceful timeout ran out)."""
        if self.in_flight:
            log.warning(
                "Worker %s (pid %s) stopped with %s requests unfinished: GRACEFUL_TIMEOUT=%ss ran out",
                worker.slot + 1,
                worker.pid,
                len(self.in_flight),
                self.settings.graceful_timeout,
                extra={"forced": True, "worker": worker.slot + 1, "worker_pid": worker.pid},
            )

    def worker_abort(self, worker) -> None:
        """Log every thread's (and greenlet's) stack when the master aborts a stuck worker."""
        stacks = current_stacks()
        log.error(
            "Worker %s (pid %s) timed out after %ss; stacks of its threads follow",
            worker.slot + 1,
            worker.pid,
            worker.cfg.timeout,
            extra={"worker": worker.slot + 1, "worker_pid": worker.pid, "stacks": stacks},
        )


def current_stacks() -> dict[str, str]:
    """The stack of every thread, and of every greenlet under gevent."""
    frames = sys._current_frames()
    stacks = {
        thread.name: "".join(traceback.format_stack(frames[thread.ident]))
        for thread in threading.enumerate()
        if thread.ident in frames
    }
    if "greenlet" in sys.modules:
        from greenlet import greenlet

        for number, green in enumerate(obj for obj in gc.get_objects() if isinstance(obj, greenlet)):
            if green.gr_frame is not None:
                stacks[f"greenlet-{number}"] = "".join(traceback.format_stack(green.gr_frame))
    return stacks


def _wait_unless_signalled(server, seconds: float) -> None:
    """Sleep up to `seconds`, returning early when a signal (TERM, INT) is queued."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and server.SIG_QUEUE.empty():
        time.sleep(0.05)


def install_exception_logging() -> None:
    """Uncaught exceptions, in any thread, become one JSON log line with the traceback."""

    def log_uncaught(kind, value, tb):
        log.critical("Uncaught %s: %s", kind.__name__, value, exc_info=(kind, value, tb))

    sys.excepthook = log_uncaught
    threading.excepthook = lambda args: log_uncaught(args.exc_type, args.exc_value, args.exc_traceback)
