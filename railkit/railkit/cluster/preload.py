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

import codecs
import contextlib
import ctypes
import gc
import importlib
import os
import threading

# Longest wait for a timer the app armed while loading (s). limits' in-memory
# storage arms one of 0.01 s; a timer still pending at the deadline is left alone.
TIMER_DEADLINE = 1.0
# glibc's mallopt() parameter for the most malloc arenas (malloc.h), and the
# most a worker needs: its main thread's, and one its request threads share.
M_ARENA_MAX = -8
MALLOC_ARENAS = 2


def prepare_to_fork() -> None:
    """Import what each worker would import for itself, let the app's start-up timers run out, freeze it all."""
    import_what_first_requests_import()
    let_timers_run_out()
    # The collector never visits frozen objects, so the workers' collections
    # do not write to (and so copy) the pages the app was loaded into.
    gc.freeze()


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
