"""`python -m railkit.cluster serve` in a granian project: check, size, load the app once, fork granian's workers.

The same start as the gunicorn cluster's, step for step: every variable is
checked before anything starts (the caller has), the workers are sized from
the container and the plan (cluster/sizing.py), the master loads the app once
and each worker shares its memory (cluster/preload.py), Prometheus files of
every process go to the master's private folder, and the board tells
`status`, /health and the watchdog what each worker does.
"""

import importlib
import logging
import multiprocessing
import os
import sys
from pathlib import Path
from typing import NoReturn

import granian
from granian.constants import HTTPModes, Interfaces
from granian.http import HTTP1Settings
from granian.log import LogLevels

from .. import __version__
from ..cluster import board as scoreboard
from ..cluster import limits, metrics, open_files, runtime
from ..cluster.diagnostics import install_exception_logging
from ..cluster.preload import limit_malloc_arenas, prepare_to_fork, refuse_threads_started_while_loading
from ..cluster.python_support import preload_error_reporting
from ..cluster.rate_limit_scope import log_rate_limit_scope
from ..cluster.sizing import ClusterSize, size_cluster
from ..settings import EXIT_BAD_CONFIG, Settings, load_settings_or_exit
from . import compat, joined, log_config, worker
from .listener import Listener, open_listener
from .server import PlatformServer
from .supervisor import Supervisor

log = logging.getLogger(__name__)

# What `serve` runs without an argument: main.py's app, as `gunicorn main:app`.
DEFAULT_APP = "main:app"
# gunicorn's exit status when the app cannot be loaded, kept for the same failure.
EXIT_APP_LOAD_ERROR = 4
# The request line and headers granian buffers at most: a larger head is answered 431 (hyper's own answer).
HEAD_BUFFER_BYTES = limits.MAX_BUFFERED_HEAD
# granian has one deadline for a request head, which is also how long a kept-alive connection may idle
# between requests (hyper's header_read_timeout). Railway's edge closes its idle connections after 60 s,
# and a server that closes first races the edge's next request on that connection (a 502): so the
# deadline is the cluster's keep-alive, above the edge's, and a slow head gets as long.
HEAD_DEADLINE_SECONDS = limits.KEEPALIVE


def serve(args: list[str]) -> NoReturn:
    """Serve the app `args` name (module:name, or module:factory() as gunicorn takes it; main:app by default)."""
    settings = load_settings_or_exit()
    log_config.configure(settings.log_level)
    compat.refuse_unless_compatible()
    target = app_named_by(args)
    size = size_cluster(settings)
    listener = open_listener(settings.port, limits.BACKLOG)
    limit_malloc_arenas()
    install_exception_logging()
    preload_error_reporting()
    # Before any worker forks: each inherits the raised limit, and holds as many connections as it allows.
    files_before, files_after = open_files.raise_soft_limit()
    folder = runtime.instance_folder(settings.port)
    # prometheus_client reads the folder when first imported: before the app is.
    name, _, value = metrics.multiprocess_env(folder)[0].partition("=")
    os.environ[name] = value
    board = scoreboard.Board.create(folder)
    board.set_master(os.getpid(), size.workers)
    scoreboard.attach(board)
    log_start_story(settings, size)
    open_files.log_limit(files_before, files_after, limits.WORKER_CONNECTIONS)
    log_rate_limit_scope(settings, size.workers)
    with worker.exit_handlers_recorded():
        app = load_app(target)
    joined.on_starting(settings, size)
    refuse_threads_started_while_loading("granian")
    prepare_to_fork()
    log.info("Listening on port %s", settings.port, extra={"port": settings.port, "addresses": listener.addresses})
    sys.exit(run(app, settings, size, board, listener))


def run(app, settings: Settings, size: ClusterSize, board: scoreboard.Board, listener: Listener) -> int:
    """granian's server with the platform's options, supervised until it stops; its exit status."""
    # Workers are forked, not spawned: they share the app the master loaded (3.14 defaults to forkserver).
    multiprocessing.set_start_method("fork", force=True)

    def make_supervisor(fork) -> Supervisor:
        return Supervisor(settings, size.workers, board, listener, fork)

    compat.replace_worker_stop_handlers(worker.set_stop_handlers)
    worker.share_listener(listener.sock.fileno())
    server = PlatformServer(listener, make_supervisor, **granian_options(settings, size))
    server.serve(
        spawn_target=worker.with_exit_duties(compat.wsgi_worker_target(), settings.graceful_timeout),
        target_loader=lambda: worker.start(app, board, size.threads, max_body_bytes(app, settings)),
        wrap_loader=False,
    )
    listener.close()
    return server.exit_code


def granian_options(settings: Settings, size: ClusterSize) -> dict:
    """granian's settings for this container, by granian's names."""
    return {
        "target": DEFAULT_APP,  # a name only: the app is the one the master loaded
        "address": "::",
        "port": settings.port,
        "interface": Interfaces.WSGI,
        "workers": size.workers,
        # Python threads per worker: the app's concurrency, as gthread's threads.
        "blocking_threads": size.threads,
        "backlog": limits.BACKLOG,
        # Connections a worker holds at once, idle kept-alive ones included (as gthread's worker_connections).
        "backpressure": open_files.connection_capacity(limits.WORKER_CONNECTIONS),
        # Railway's edge speaks HTTP/1.1 to the app.
        "http": HTTPModes.http1,
        "websockets": False,
        "http1_settings": HTTP1Settings(
            header_read_timeout=HEAD_DEADLINE_SECONDS * 1000,
            keep_alive=True,
            max_buffer_size=HEAD_BUFFER_BYTES,
        ),
        "log_level": LogLevels(settings.log_level),
        "log_dictconfig": log_config.logging_config(settings.log_level),
        # The app logs its requests itself, with their request id and within Railway's line rate.
        "log_access": False,
    }


def app_named_by(args: list[str]) -> str:
    """The one argument granian's start takes, the app; gunicorn's options are refused in one line (exit 78)."""
    if not args:
        return DEFAULT_APP
    if len(args) == 1 and not args[0].startswith("-"):
        return args[0]
    log.error(
        "Refusing to start: this project serves with granian, which takes only the app (module:name), not %s; "
        "the environment sets the rest (WEB_CONCURRENCY, GRACEFUL_TIMEOUT, ...)",
        " ".join(args),
        extra={"arguments": args},
    )
    sys.exit(EXIT_BAD_CONFIG)


def max_body_bytes(app, settings: Settings) -> int:
    """The largest body the app takes: its MAX_CONTENT_LENGTH (railkit.init_app sets the plan's), else the plan's."""
    limit = getattr(app, "config", {}).get("MAX_CONTENT_LENGTH")
    return int(limit) if limit else settings.plan.max_body_mb * 2**20


def load_app(target: str):
    """The WSGI app `module:name` (or `module:factory()`) names, imported once in the master; exit 4 if it fails."""
    module_name, _, name = target.partition(":")
    name = name or "app"
    call = name.endswith("()")
    try:
        if "" not in sys.path and str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        app = getattr(importlib.import_module(module_name), name.removesuffix("()"))
        return app() if call else app
    except Exception as error:  # any failure to load stops the start, with its traceback
        log.error(
            "Refusing to start: the app %s failed to load: %s", target, error, exc_info=True, extra={"app": target}
        )
        sys.exit(EXIT_APP_LOAD_ERROR)


def log_start_story(settings: Settings, size: ClusterSize) -> None:
    """The start-up story, as the gunicorn cluster tells it: mode, container, workers and why."""
    mode = "cluster mode" if size.workers > 1 else "single-process mode"
    log.info(
        "Master process starting %s (pid %s, granian %s)",
        mode,
        os.getpid(),
        granian.__version__,
        extra={"mode": mode, "server": "granian", "granian": granian.__version__, "railkit_version": __version__},
    )
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
    parts = pinned.split(".")
    if pinned and [str(number) for number in sys.version_info[: len(parts)]] != parts:
        running = f"{sys.version_info.major}.{sys.version_info.minor}"
        log.warning(
            "Running Python %s, but .python-version pins %s: Railway will run %s",
            running,
            pinned,
            pinned,
            extra={"python": running, "python_version_pin": pinned},
        )
