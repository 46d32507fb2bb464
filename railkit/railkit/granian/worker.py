"""A granian worker's own start and end, once forked: its slot on the board, its signals, its app wrapped.

granian calls the platform's loader in each new worker (the app was loaded in
the master, and the worker shares its memory); the loader runs start() and
returns the app to serve. granian sets the worker's SIGTERM and SIGINT
handlers only after that (with the platform's set_stop_handlers), so a stop
that arrives while the worker boots is kept (at_fork) and raised again then.
The kernel hands a stop signal to any of the worker's threads, and Python runs
its handler only in the main thread, which granian leaves blocked on a wait that
only a signal landing on it interrupts: a thread reads each signal's number from
the wakeup fd (CPython writes it from whichever thread took the signal) and runs
the handler itself, so a stop is never left waiting for the next signal.
A worker stopped alone (retired, recycled) first stops accepting and answers
RETIRE_NOTICE_SECONDS with `Connection: close`: granian's graceful stop closes
at once every connection it has not read a request from, both a kept-alive
one between requests and one it accepted an instant before, and their clients
would meet a closed connection (gunicorn 27.0.1's gthread worker gives its
kept-alive clients 2 s the same way). A worker
process ends with multiprocessing's os._exit(), which skips what an
interpreter's exit does: after a graceful stop the worker does it itself
(exit_duties), so the app's atexit handlers run and its buffered files reach the disk.
"""

import atexit
import contextlib
import faulthandler
import logging
import os
import signal
import socket
import sys
import threading
import time

from .. import background, tracing
from ..cluster import board as scoreboard
from ..cluster.diagnostics import install_exception_logging
from ..cluster.preload import flush_open_files
from . import compat, joined
from .stacks import log_stacks
from .wsgi import TrackedApp

log = logging.getLogger(__name__)

# Signals that stop a worker; granian sets its own handlers for these after the loader.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# The master's signals that mean nothing to a worker (a group-wide SIGHUP must not end it).
IGNORED_SIGNALS = (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR1, signal.SIGUSR2)
# How long a worker waits for granian's handlers before raising a stop it got while booting.
HANDLERS_DEADLINE = 30.0
# The exit status of a worker aborted by the master (as after SIGABRT's own default, without a core file).
ABORTED_EXIT = 128 + signal.SIGABRT
# The signals whose handler the relay runs too: the stops, and the watchdog's abort.
RELAYED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGABRT)
# How long a worker stopped alone answers with `Connection: close` before it stops taking requests.
RETIRE_NOTICE_SECONDS = 2.0

# The board slot the master gives the next worker it forks, set just before the fork.
_next_slot: int | None = None
# The shared listener's descriptor, as every worker inherits it (set in the master before any fork).
_listener_fd: int | None = None
# The exit handlers the app registered while the master loaded it: multiprocessing's fork drops every
# handler a worker inherits (CPython 3.13 and later), and each worker registers these again.
_app_exit_handlers: list[tuple] = []
# A stop signal that came before granian's handlers were set (0: none).
_stop_while_booting = 0
# Set once this worker was told to stop alone: its answers close their connections.
_closing = threading.Event()
# Taken by the first thread that runs the abort (the main thread and the relay may both run it).
_aborting = threading.Lock()


def closing() -> bool:
    """Whether this worker is about to stop alone (its answers say `Connection: close`)."""
    return _closing.is_set()


def set_stop_handlers():
    """granian's set_sync_signals for the platform's workers: SIGINT stops at once, SIGTERM after a notice.

    Returns the event granian's worker stops on. The notice is skipped when the
    whole cluster stops: its lame duck has already told every client.
    """
    stop = compat.new_stop_event()
    # Each handler may run twice for one signal (in the main thread and in the relay), and granian's event
    # hangs the worker when two threads set it at once: each step is taken once, by whichever thread comes first.
    stop_once, notice_once = threading.Lock(), threading.Lock()

    def stop_now():
        if stop_once.acquire(blocking=False):
            stop.set()

    def handle_int(_signum, _frame):
        stop_now()

    def handle_term(_signum, _frame):
        board = scoreboard.current()
        if board is not None and board.stopping_since():
            stop_now()
        elif notice_once.acquire(blocking=False):
            _closing.set()
            stop_accepting()
            notice = threading.Timer(RETIRE_NOTICE_SECONDS, stop_now)
            notice.daemon = True
            notice.start()

    signal.signal(signal.SIGINT, handle_int)
    signal.signal(signal.SIGTERM, handle_term)
    _relay_signals()
    return stop


def _relay_signals() -> None:
    """Run the handlers of RELAYED_SIGNALS from a thread of their own too, whichever thread took the signal."""
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    os.set_blocking(write_end, False)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)

    def relay():
        while True:
            for signum in os.read(read_end, 64):
                handler = signal.getsignal(signum)
                if signum in RELAYED_SIGNALS and callable(handler):
                    handler(signum, None)

    def forget_in_child():
        # A process the app forks is not a worker: its signals are its own, as in a fresh interpreter.
        signal.set_wakeup_fd(-1)
        os.close(read_end)
        os.close(write_end)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    os.register_at_fork(after_in_child=forget_in_child)
    threading.Thread(target=relay, name="railkit-stop-signals", daemon=True).start()


def share_listener(fd: int) -> None:
    """In the master, before any fork: the descriptor of the socket every worker accepts from."""
    global _listener_fd
    _listener_fd = fd


def stop_accepting() -> None:
    """Point this worker's copy of the shared listener's descriptor at a socket nobody connects to.

    granian keeps calling accept() on that descriptor, and finds nothing: the
    other workers take every new connection, and this one serves those it has.
    """
    if _listener_fd is None:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as unreached:
        unreached.bind(("127.0.0.1", 0))
        unreached.listen(1)
        unreached.setblocking(False)
        os.dup2(unreached.fileno(), _listener_fd)


def assign_slot(slot: int) -> None:
    """In the master, right before a fork: the forked worker takes `slot`."""
    global _next_slot
    _next_slot = slot


def at_fork() -> None:
    """In the new worker, before anything else: the master's signal plumbing is not its own."""
    signal.set_wakeup_fd(-1)
    for signum in STOP_SIGNALS:
        signal.signal(signum, _keep_stop)
    for signum in IGNORED_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    for signum in (signal.SIGCHLD, signal.SIGQUIT):
        signal.signal(signum, signal.SIG_DFL)


def _keep_stop(signum, _frame) -> None:
    global _stop_while_booting
    _stop_while_booting = signum


@contextlib.contextmanager
def exit_handlers_recorded():
    """Note each exit handler registered meanwhile (the app's, while the master loads it), for start()."""
    register = atexit.register

    def recording(func, *args, **kwargs):
        _app_exit_handlers.append((func, args, kwargs))
        return register(func, *args, **kwargs)

    atexit.register = recording
    try:
        yield
    finally:
        atexit.register = register


def _inherit_exit_handlers() -> None:
    """Register again the exit handlers multiprocessing's fork dropped: logging's, then the app's, in order."""
    if sys.version_info < (3, 13):  # multiprocessing's fork kept them
        return
    atexit.register(logging.shutdown)
    for func, args, kwargs in _app_exit_handlers:
        atexit.register(func, *args, **kwargs)


def start(app, board: scoreboard.Board, threads: int, max_body_bytes: int) -> TrackedApp:
    """Claim the slot, make failures loud and logged, and return the app this worker serves."""
    slot, pid = _next_slot, os.getpid()
    _inherit_exit_handlers()
    faulthandler.enable()
    install_exception_logging()
    joined.post_fork()
    signal.signal(signal.SIGABRT, lambda *_: _abort(slot, pid))
    board.claim(slot, pid)
    tracing.start_worker()
    log.info("Worker %s started (pid %s)", slot + 1, pid, extra={"worker": slot + 1, "worker_pid": pid})
    background.start()
    threading.Thread(target=_raise_kept_stop, name="railkit-boot-stop", daemon=True).start()
    return TrackedApp(app, board, slot, threads, max_body_bytes, closing)


def with_exit_duties(target, graceful_timeout: float):
    """granian's worker entry point, followed by what the interpreter's exit would do (os._exit skips it)."""

    def run(*args, **kwargs):
        try:
            return target(*args, **kwargs)
        finally:
            exit_duties(graceful_timeout)

    return run


def exit_duties(graceful_timeout: float) -> None:
    """The platform's worker_exit work (the owner's background tasks, the last spans, the joined work), the
    atexit handlers (the app's own, weakref finalizers, logging's flush), then a flush of every open file."""
    background.stop(graceful_timeout)
    tracing.stop_worker()
    joined.worker_exit()
    # atexit has no public way to run its handlers before the process ends; this is the one CPython uses.
    atexit._run_exitfuncs()
    flush_open_files()


def _raise_kept_stop() -> None:
    """Once granian has set its stop handlers, raise the stop that came before them, if one did."""
    deadline = time.monotonic() + HANDLERS_DEADLINE
    while signal.getsignal(signal.SIGTERM) is _keep_stop and time.monotonic() < deadline:
        time.sleep(0.01)
    if _stop_while_booting:
        os.kill(os.getpid(), _stop_while_booting)


def _abort(slot: int, pid: int) -> None:
    """SIGABRT from the master's watchdog: log every stack, then exit at once (the stuck request cannot end)."""
    if not _aborting.acquire(blocking=False):
        return
    log_stacks(f"Worker {slot + 1} (pid {pid}) aborted", {"worker": slot + 1, "worker_pid": pid})
    sys.stdout.flush()
    os._exit(ABORTED_EXIT)
