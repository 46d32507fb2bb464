"""The master's last steps with the preloaded app before it forks workers.

gunicorn.conf.py loads the app once in the master (preload_app), so every
worker starts with the master's memory and shares it until it writes to it.
Each step here removes a reason to write: a worker's own imports, the
collector's bookkeeping, and a malloc arena per request thread.

Reference counts are left as they are. Making the master's objects immortal
(writing PEP 683's refcount into their headers) would save the pages a
worker's refcount writes copy, but an immortal object is never freed: a
buffered file the app opened at import loses its unflushed writes, finalizers
of dropped objects never run, and memory a worker drops is never given back.
"""

import atexit
import codecs
import contextlib
import ctypes
import gc
import importlib
import io
import logging
import os
import sys
import threading
import weakref

from ..settings import EXIT_BAD_CONFIG

log = logging.getLogger(__name__)

# Longest wait for a timer the app armed while loading (s). limits' in-memory
# storage arms one of 0.01 s; a timer still pending at the deadline is left alone.
TIMER_DEADLINE = 1.0
# Threads that survive a fork by design: sentry-sdk's start again in a forked child (os.register_at_fork).
FORK_AWARE_THREADS = ("sentry-sdk.",)
# Longest wait for the atexit handlers of a start refused because of a thread (s): the thread may block them.
REFUSAL_EXIT_DEADLINE = 2.0
# glibc's mallopt() parameter for the most malloc arenas (malloc.h), and the
# most a worker needs: its main thread's, and one its request threads share.
M_ARENA_MAX = -8
MALLOC_ARENAS = 2


def prepare_to_fork() -> None:
    """Import what each worker would import for itself, let the app's start-up timers run out, freeze it all."""
    import_what_first_requests_import()
    let_timers_run_out()
    # gc.get_objects() leaves frozen objects out: the files open now are noted for flush_open_files
    # (once unfrozen: the app may have frozen some itself), and flushed now, or every worker would
    # write again what the master had buffered.
    gc.unfreeze()
    for stream in _files(gc.get_objects()):
        with contextlib.suppress(Exception):  # unhashable, or refuses a weak reference: flushed now only
            _files_at_freeze.add(stream)
        _flush(stream)
    # The collector never visits frozen objects, so the workers' collections
    # do not write to (and so copy) the pages the app was loaded into. They stay
    # frozen at exit too: unfrozen, every worker's exit walked and copied the whole
    # app again (CHANGELOG, 2.0.0).
    gc.freeze()


def flush_open_files() -> None:
    """Flush every open file the process writes to, before the interpreter's exit tears objects down.

    The teardown flushes a file only when it frees it, and a frozen file it
    never frees: a worker exited 0 with a line still buffered in a file the app
    opened at import (CHANGELOG, 2.0.0).
    """
    interrupted = None
    for stream in [*_files_at_freeze, *_files(gc.get_objects())]:
        try:
            _flush(stream)
        except BaseException as error:  # a signal's exception, or SystemExit, from one file's own flush()
            interrupted = interrupted or error
    if interrupted is not None:  # raised once every other file is flushed
        raise interrupted


def _flush(stream: io.IOBase) -> None:
    with contextlib.suppress(Exception):  # closed, detached, or not for writing: nothing to flush
        if not stream.closed and stream.writable():
            stream.flush()


def _files(objects: list) -> list[io.IOBase]:
    # By their real type: a proxy (werkzeug's LocalProxy) says it is what it stands for.
    return [thing for thing in objects if _is_io_type(type(thing))]


def _is_io_type(kind: type) -> bool:
    try:
        return issubclass(kind, io.IOBase)
    except Exception:  # a class whose subclass hook fails is no file of ours
        return False


# The files open when the app was frozen, held weakly (the app may still close and drop them).
_files_at_freeze: weakref.WeakSet[io.IOBase] = weakref.WeakSet()
# Registered at import, before gunicorn.conf.py's server loads the app: atexit runs handlers last
# registered first, so this runs after the app's own, in the master and in every worker.
atexit.register(flush_open_files)


# Per server: the process that loads the app before the fork, and the other way out it offers.
LOADERS = {
    "gunicorn": (
        "gunicorn's master",
        ", or load the app in every worker instead (preload_app = False in gunicorn.conf.py)",
    ),
    "granian": ("the platform's supervisor", ""),
}


def refuse_threads_started_while_loading(server: str = "gunicorn") -> None:
    """Stop the start with one line when the app started a thread while the master process loaded it.

    A fork copies no thread: the thread would run in the master only, never in a worker, a lock
    it holds at the fork would stay held in every worker (deadlocking the requests that take it),
    and a non-daemon one would keep the master alive after SIGTERM until Railway kills it.
    """
    threads = [
        thread
        for thread in threading.enumerate()
        if thread is not threading.main_thread()
        and not isinstance(thread, threading.Timer)
        and not thread.name.startswith(FORK_AWARE_THREADS)
    ]
    if not threads:
        return
    named = [describe_thread(thread) for thread in threads]
    loader, otherwise = LOADERS[server]
    log.error(
        "Refusing to start: the app started %s while %s loaded it (%s). A fork copies no thread, so it would "
        "run in the master only, and a lock it held at the fork would stay held in every worker. Start it with "
        '@railkit.in_every_worker (README: "Background work")%s',
        "a thread" if len(threads) == 1 else f"{len(threads)} threads",
        loader,
        "; ".join(named),
        otherwise,
        extra={"threads": named, "setting": "preload_app"},
    )
    exit_despite_threads(EXIT_BAD_CONFIG)


def describe_thread(thread: threading.Thread) -> str:
    """The thread's name and what it runs (its target, else its class), e.g. `poller (my_app.jobs.poll, daemon)`."""
    target = getattr(thread, "_target", None)  # CPython's Thread keeps it while the thread runs
    runs = target or type(thread).run
    where = f"{getattr(runs, '__module__', '?')}.{getattr(runs, '__qualname__', repr(runs))}"
    return f"{thread.name} ({where}{', daemon' if thread.daemon else ''})"


def exit_despite_threads(status: int) -> None:
    """Exit now, after the atexit handlers (within a deadline): sys.exit would wait for every non-daemon thread."""
    handlers = threading.Thread(target=atexit._run_exitfuncs, name="railkit:atexit", daemon=True)
    handlers.start()
    handlers.join(REFUSAL_EXIT_DEADLINE)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


def limit_malloc_arenas() -> None:
    """Let a worker's request threads share one malloc arena instead of one each.

    glibc gives each new thread that allocates its own arena, up to 8 per
    core, and each holds ~70 KB of its worker's own memory (~1 MB for 32
    threads). Under the GIL the threads rarely allocate at once, so sharing
    costs no time. Set in the master before any thread starts; workers inherit
    it. MALLOC_ARENA_MAX, when set, is left to decide; other C libraries have no arenas.
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt(M_ARENA_MAX, MALLOC_ARENAS)


def let_timers_run_out() -> None:
    """Wait for the one-shot timers the app started while it was imported.

    A fork copies a thread's state but not the thread. Under gevent, which
    the master runs patched, a timer is a greenlet that only runs when the
    master's loop turns, so without this each worker would inherit it
    unstarted, run it, and fail it with a raw traceback.
    """
    for thread in threading.enumerate():
        if isinstance(thread, threading.Timer):
            thread.join(TIMER_DEADLINE)


def import_what_first_requests_import() -> None:
    """Import, once and shared, what every worker would otherwise import on its first requests (~0.3 MB each)."""
    # Werkzeug encodes each request's Host with the idna codec (encodings.idna, stringprep).
    codecs.lookup("idna")
    # gthread's pool of request threads; random.seed's sha512, which gunicorn calls in each new worker.
    for name in ("concurrent.futures.thread", "_sha2"):
        with contextlib.suppress(ImportError):  # _sha2 is CPython's; another Python seeds another way
            importlib.import_module(name)
