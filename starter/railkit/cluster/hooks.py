"""gunicorn's server hooks: each hands its event to the module that owns the job.

config.gunicorn_settings() builds one ClusterHooks per reading of
gunicorn.conf.py; the cluster's logger installs its methods as gunicorn's
hooks, each composed with the owner's hook of the same name, if any
(install_platform_hooks): setup hooks run the platform's first, the owner's
after it; teardown hooks run the owner's first, so the owner's can still use
what the platform's will close (the database's pool), as Flask's teardown and
atexit do.
Methods named for master-side hooks run in the master; post_fork,
post_worker_init, pre_request, post_request, worker_exit and worker_abort
run in a worker. The jobs live in master_loop (deadlines: crash back-off,
lame duck, drain), lifecycle (why a worker died), watchdog (memory, stuck
requests), inflight (request tracking), diagnostics (stacks, uncaught
exceptions), preload (the app the workers share) and gunicorn_compat
(every touch of gunicorn's internals).
"""

import dataclasses
import faulthandler
import itertools
import logging
import signal
import sys
import time
from pathlib import Path
from typing import NoReturn

from gunicorn.errors import HaltServer

from .. import __version__, background, tracing
from ..settings import EXIT_BAD_CONFIG, Settings
from . import board as scoreboard
from . import gunicorn_compat as compat
from . import limits, metrics, open_files, runtime
from .diagnostics import install_exception_logging, log_stacks
from .errors import answer_protocol_errors_as_problems
from .inflight import ConnectionQuota, InFlight, TimedApp, describe, request_key_holder
from .lifecycle import CrashGuard, Death, describe_status, log_death
from .master_loop import MasterLoop
from .network import refuse_if_taken
from .preload import limit_malloc_arenas, prepare_to_fork, refuse_threads_started_while_loading
from .rate_limit_scope import log_rate_limit_scope
from .sizing import ClusterSize
from .watchdog import WorkerWatchdog

log = logging.getLogger(__name__)

# Exit status when the master gives up: workers keep dying, or no slot is left.
EXIT_GAVE_UP = 1
# Under load, a worker writes its request count to the board once per this many requests.
COUNT_EVERY = 32
# A worker's own deadline after SIGTERM exceeds the master's by this much (s),
# so only the master ever forces a stop, and says so once.
WORKER_GRACE_MARGIN = 5


# Every gunicorn server hook the platform uses.
PLATFORM_HOOKS = (
    "on_starting",
    "on_reload",
    "when_ready",
    "pre_fork",
    "post_fork",
    "post_worker_init",
    "pre_request",
    "post_request",
    "worker_abort",
    "worker_exit",
    "child_exit",
    "nworkers_changed",
    "on_exit",
)
# Hooks that take things down: the owner's runs before the platform's (last set up, first torn down).
TEARDOWN_HOOKS = ("worker_exit", "child_exit", "on_exit")

# The hooks of the latest reading of gunicorn.conf.py, installed when gunicorn's logger is set up.
_prepared: "ClusterHooks | None" = None

# Work of platform modules the cluster does not import (railkit.db), run by the platform's hooks after
# their own: on_starting's callbacks get (settings, size, cfg) in the master, size being what gunicorn
# really runs (running_size) and cfg gunicorn's configuration; on_reload's get (settings, size, server)
# once SIGHUP re-read the configuration; nworkers_changed's get (server, new, old) when TTIN/TTOU change
# the count (not while a reload sets it); post_fork's and worker_exit's get nothing, in the worker.
JOINABLE_HOOKS = ("on_starting", "on_reload", "nworkers_changed", "post_fork", "worker_exit")
_joined: dict[str, list] = {name: [] for name in JOINABLE_HOOKS}


def join(hook: str, callback) -> None:
    """Have the platform's `hook` call `callback` after its own work, once however often it is joined."""
    if callback not in _joined[hook]:
        _joined[hook].append(callback)


def joined(hook: str) -> list:
    """The callbacks joined to `hook`, in order: for a server that runs them at its own moments (granian)."""
    return list(_joined[hook])


def prepare(settings: Settings, size: ClusterSize) -> "ClusterHooks":
    """The hooks for this reading of the configuration; install_platform_hooks puts them in place."""
    global _prepared
    _prepared = ClusterHooks(settings, size)
    return _prepared


def install_platform_hooks(cfg) -> None:
    """Make each of gunicorn's hooks the platform's, followed by the owner's hook of that name, if any.

    gunicorn keeps one function per hook, and a function the owner defines in
    gunicorn.conf.py would otherwise replace the platform's silently. Setting
    the value directly skips gunicorn's arity check, which a composed hook
    passes by construction: it takes what the owner's takes.
    """
    cluster = _prepared
    if cluster is None:
        return
    for name in PLATFORM_HOOKS:
        setting = cfg.settings[name]
        configured = setting.get()
        if getattr(configured, "__self__", None) is cluster or getattr(configured, "composed", False):
            continue  # already in place (gunicorn set this configuration up before)
        platform = getattr(cluster, name)
        setting.value = platform if configured is setting.default else _compose(name, platform, configured)


def _compose(name: str, platform, owner):
    """One hook running both: the platform's first for setup, the owner's first for teardown (TEARDOWN_HOOKS)."""
    if name in TEARDOWN_HOOKS:

        def hook(*args):
            try:
                return owner(*args)
            finally:
                platform(*args)  # the platform's teardown runs even when the owner's fails
    else:

        def hook(*args):
            platform(*args)
            return owner(*args)

    hook.composed = True
    hook.platform = platform
    hook.__name__ = hook.__qualname__ = getattr(owner, "__name__", "hook")
    hook.__wrapped__ = owner
    return hook


def require_platform_hooks(cfg) -> None:
    """Stop the start with one JSON line when the platform's hooks were never installed.

    Our worker classes call this from gunicorn's check_config: it happens when
    gunicorn.conf.py sets a logger_class of its own, so the cluster's logger
    never put the hooks in place, and the cluster would run without its board,
    watchdog and deadlines.
    """
    installed = cfg.settings["post_fork"].get()
    ours = getattr(installed, "__self__", None) is _prepared or getattr(installed, "composed", False)
    if _prepared is not None and ours:
        return
    log.error(
        "Refusing to start: the cluster's server hooks are not installed; gunicorn.conf.py sets logger_class "
        "(the cluster's logger, railkit.cluster.logger.ClusterLogger, installs them: subclass it instead)",
        extra={"setting": "logger_class"},
    )
    sys.exit(EXIT_BAD_CONFIG)


class ClusterHooks:
    """The state the hooks share, and the hooks themselves."""

    def __init__(self, settings: Settings, size: ClusterSize):
        self.settings = settings
        self.size = size
        # The port the cluster serves, its board's key: PORT, unless gunicorn binds elsewhere (on_starting).
        self.port = settings.port
        self.crashes = CrashGuard()
        self.loop = MasterLoop(self)
        # pid -> waitpid() status, filled as gunicorn reaps each worker.
        self.exit_statuses: dict[int, int] = {}
        # Workers killed because GRACEFUL_TIMEOUT ran out at shutdown.
        self.forced: set[int] = set()
        # Made in on_starting, in the master, and inherited by every worker.
        self.board: scoreboard.Board | None = None
        self.watchdog: WorkerWatchdog | None = None
        # A worker's own, made once it runs (after gevent patches threading).
        self.in_flight: InFlight | None = None
        self.set_request_key = self.current_request_key = None
        self.served = itertools.count(1)
        self.quota = ConnectionQuota(limits.MAX_REQUESTS_PER_CONNECTION if settings.worker_class == "gthread" else None)

    # -- master ---------------------------------------------------------------

    def on_starting(self, server) -> None:
        """Refuse a start that cannot work; tell the start-up story; prepare the master's machinery."""
        compat.refuse_unless_compatible(self.settings.worker_class)
        self.port = serving_port(server, self.settings.port)
        refuse_if_taken(compat.bind_addresses(server), self.port)
        limit_malloc_arenas()
        install_exception_logging()
        # Before any worker forks: each inherits the raised limit and sizes its connections from it.
        open_files_limits = open_files.raise_soft_limit()
        # Keyed by the port really bound, so `status --port` finds the board of a cluster bound elsewhere.
        # (The metrics stay in PORT's folder, made while gunicorn read its config, before any --bind was known.)
        self.board = scoreboard.Board.create(runtime.instance_folder(self.port))
        running = running_size(server.cfg, self.settings, self.size)
        self.board.set_master(server.pid, running.workers)
        scoreboard.attach(self.board)
        self.watchdog = WorkerWatchdog(self.board, self.settings.worker_max_memory_mb, self.settings.graceful_timeout)
        compat.record_exit_statuses(server, self.exit_statuses)
        compat.drop_reaper_lines()
        compat.wrap_master_loop(server, self.loop)
        server.cluster = self
        log_start_story(server, self.settings, running)
        open_files.log_limit(*open_files_limits, server.cfg.worker_connections)
        log_rate_limit_scope(self.settings, running.workers)
        for callback in _joined["on_starting"]:
            callback(self.settings, running, server.cfg)

    def on_reload(self, server) -> None:
        """Carry the master's machinery over to the hooks of the re-read config (SIGHUP)."""
        previous = server.cluster
        self.board, self.watchdog, self.crashes = previous.board, previous.watchdog, previous.crashes
        self.exit_statuses, self.forced = previous.exit_statuses, previous.forced
        self.loop, self.port = previous.loop, previous.port
        self.loop.hooks = self
        # gunicorn has re-read the file and the command line: cfg.workers is what it now runs.
        self.board.set_configured(server.cfg.workers)
        server.cluster = self
        for callback in _joined["on_reload"]:
            callback(self.settings, running_size(server.cfg, self.settings, self.size), server)
        log.info("Configuration reloaded: replacing the workers with %s new ones", server.cfg.workers)

    def when_ready(self, server) -> None:
        """Ready the preloaded app to be shared by the workers about to be forked."""
        refuse_threads_started_while_loading()
        prepare_to_fork()
        addresses = [_address_text(address) for address in compat.bind_addresses(server)]
        log.info("Listening on port %s", self.port, extra={"port": self.port, "addresses": addresses})

    def _halt(self, reason: str) -> NoReturn:
        log.error("Stopping the cluster: %s", reason)
        raise HaltServer(reason, EXIT_GAVE_UP)

    def pre_fork(self, server, worker) -> None:
        """Give the worker a free slot on the board, or stop loudly when none is left."""
        taken = {other.slot for other in compat.workers(server).values()}
        slot = self.board.free_slot(taken)
        if slot is None:
            reason = f"all {scoreboard.MAX_SLOTS} worker slots are taken; lower WEB_CONCURRENCY"
            self._halt(reason)
        worker.slot = slot
        worker.started = time.time()
        metrics.record_worker_start()

    def child_exit(self, server, worker) -> None:
        """Log a dead worker's cause; back off, or give up, if workers keep dying at start."""
        self.board.release(worker.slot)
        stopped_for = self.watchdog.forget(worker.pid)
        death = Death(
            status=describe_status(self.exit_statuses.pop(worker.pid, None)),
            lifetime=time.time() - worker.started,
            timed_out=compat.was_aborted(worker) or stopped_for == "stuck",
            over_memory=stopped_for == "memory",
            shutting_down=not compat.listeners(server),
            stopping=self.loop.stopping,
        )
        metrics.forget_worker(worker.pid)
        metrics.record_death(death)
        log_death(worker.slot + 1, worker.pid, death)
        if death.shutting_down:
            if death.status == "SIGKILL":
                self.forced.add(worker.pid)
            return
        if death.kind == "early":
            self.loop.worker_left_early()
            return
        self.crashes.record(death)
        if self.crashes.exhausted:
            reason = (
                f"{self.crashes.streak} workers died within seconds of starting (last: {death.cause}); "
                "giving up so the platform's restart policy can take over"
            )
            self._halt(reason)
        delay = self.crashes.seconds_until_spawn()
        if delay:
            log.warning("Workers keep dying young: waiting %.1fs before the next one", delay)
            metrics.record_backoff(delay)

    def on_exit(self, server) -> None:
        """Say so, once, when shutdown had to kill workers that outlived the graceful timeout."""
        forced = self.forced | set(compat.workers(server))
        if forced:
            log.warning(
                "Killed %s %s still busy when GRACEFUL_TIMEOUT=%ss ran out",
                len(forced),
                "worker" if len(forced) == 1 else "workers",
                self.settings.graceful_timeout,
                extra={"forced": True, "worker_pids": sorted(forced)},
            )

    def nworkers_changed(self, server, new_value, old_value) -> None:
        if self.board:
            self.board.set_configured(new_value)
            for callback in _joined["nworkers_changed"]:
                callback(server, new_value, old_value)

    # -- worker ---------------------------------------------------------------

    def post_fork(self, server, worker) -> None:
        """Make the worker's failures loud and logged, and its protocol errors problem+json."""
        compat.restore_os_in_worker()
        compat.extend_own_graceful_timeout(worker, WORKER_GRACE_MARGIN)
        faulthandler.enable()
        install_exception_logging()
        answer_protocol_errors_as_problems()
        for callback in _joined["post_fork"]:
            callback()

    def post_worker_init(self, worker) -> None:
        """Put the worker on the board once it can serve; time its app; make Ctrl-C drain it."""
        slot = worker.slot
        self.board.claim(slot, worker.pid)
        self.in_flight = InFlight(lambda since, label: self.board.set_busy(slot, since, label))
        self.set_request_key, self.current_request_key = request_key_holder()
        compat.wrap_worker_app(worker, lambda app: TimedApp(app, self.in_flight, self.current_request_key))
        tracing.start_worker()
        signal.signal(signal.SIGINT, worker.handle_exit)
        extra = {"worker": slot + 1, "worker_pid": worker.pid}
        log.info("Worker %s started (pid %s)", slot + 1, worker.pid, extra=extra)
        background.start()
        if self.board.workers_stopped_since():
            # The master told the workers to stop while this one booted, before gunicorn set its handler: it was lost.
            signal.raise_signal(signal.SIGTERM)

    def pre_request(self, worker, req) -> None:
        """Note when the app starts on the request; close its connection after it when stopping."""
        self.quota.apply(req)
        if self.board.stopping_since():
            compat.close_after_answer(req)
        self.set_request_key(id(req))
        self.in_flight.begin(id(req), describe(req))
        # The watchdog aborts a worker recycled for a stuck request once that request is all it holds.
        self.board.set_in_flight(worker.slot, len(self.in_flight))

    def post_request(self, worker, req, environ, resp) -> None:
        """Count the request and clear it from the requests in flight."""
        self.in_flight.end(id(req))
        self.board.set_in_flight(worker.slot, len(self.in_flight))
        self.set_request_key(None)
        served = next(self.served)
        # The count is for `status`: exact at rest, at most COUNT_EVERY behind under load (the board is shared memory).
        if not self.in_flight or served % COUNT_EVERY == 0:
            self.board.set_requests(worker.slot, served)

    def worker_exit(self, server, worker) -> None:
        """Stop the owner's background tasks; say so when requests were left unfinished (graceful timeout)."""
        background.stop(self.settings.graceful_timeout)
        if self.in_flight:
            log.warning(
                "Worker %s (pid %s) stopped with %s requests unfinished: its graceful timeout ran out",
                worker.slot + 1,
                worker.pid,
                len(self.in_flight),
                extra={"worker": worker.slot + 1, "worker_pid": worker.pid, "unfinished": len(self.in_flight)},
            )
        tracing.stop_worker()
        for callback in _joined["worker_exit"]:
            callback()

    def worker_abort(self, worker) -> None:
        """Log every thread's (and greenlet's) stack, one line each, when the master aborts this worker."""
        log_stacks(
            f"Worker {worker.slot + 1} (pid {worker.pid}) aborted",
            {"worker": worker.slot + 1, "worker_pid": worker.pid},
        )


def serving_port(server, default: int) -> int:
    """The first TCP port gunicorn binds (gunicorn.conf.py or --bind may name another than PORT); `default` if none."""
    ports = [address[1] for address in compat.bind_addresses(server) if isinstance(address, tuple)]
    return ports[0] if ports else default


def _address_text(address) -> str:
    """(host, port) as host:port, [host]:port for IPv6; a unix socket's path as it is."""
    if not isinstance(address, tuple):
        return str(address)
    host, port = address[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def running_size(cfg, settings: Settings, size: ClusterSize) -> ClusterSize:
    """What gunicorn will really run: the platform's size, unless gunicorn.conf.py or the command line changed it."""
    threads = cfg.threads if settings.worker_class == "gthread" else size.threads
    if cfg.workers == size.workers:
        return dataclasses.replace(size, threads=threads)
    reason = f"set in gunicorn.conf.py or on the command line (the platform's size: {size.workers}, {size.reason})"
    return dataclasses.replace(size, workers=cfg.workers, threads=threads, reason=reason)


def log_start_story(server, settings: Settings, size: ClusterSize) -> None:
    mode = "cluster mode" if size.workers > 1 else "single-process mode"
    # The seed's words; the platform's version rides along as a field.
    extra = {"mode": mode, "railkit_version": __version__}
    log.info("Master process starting %s (pid %s)", mode, server.pid, extra=extra)
    warn_if_python_differs(Path(".python-version"))
    log.info(
        "CPU cores detected: %g (%s); memory: %.0f MB (%s)",
        size.cpus.value,
        size.cpus.source,
        size.memory_mb.value,
        size.memory_mb.source,
        extra={"cpus": size.cpus.value, "memory_mb": round(size.memory_mb.value)},
    )
    log.info(
        "Starting %s %s for load balancing: %s",
        size.workers,
        "worker" if size.workers == 1 else "workers",
        size.reason,
        extra={"workers": size.workers, "threads": size.threads, "plan": settings.plan.name},
    )


def warn_if_python_differs(pin: Path) -> None:
    """Say so when this Python is not the one .python-version pins (the one Railpack installs)."""
    try:
        pinned = pin.read_text().strip()
    except OSError:
        return
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    parts = pinned.split(".")
    if pinned and [str(number) for number in sys.version_info[: len(parts)]] != parts:
        log.warning(
            "Running Python %s, but .python-version pins %s: Railway will run %s",
            running,
            pinned,
            pinned,
            extra={"python": running, "python_version_pin": pinned},
        )
