"""The master's last steps with the preloaded app before it forks workers.

gunicorn.conf.py loads the app once in the master (preload_app), so every
worker starts with the master's memory and shares it until it writes to it.
Each step here removes a reason to write: a worker's own imports, the
collector's bookkeeping, refcounts, and a malloc arena per request thread.
"""

import codecs
import contextlib
import ctypes
import gc
import importlib
import logging
import os
import sys
import sysconfig
import threading
import types

log = logging.getLogger(__name__)

# Longest wait for a timer the app armed while loading (s). limits' in-memory
# storage arms one of 0.01 s; a timer still pending at the deadline is left alone.
TIMER_DEADLINE = 1.0
# The refcount CPython 3.12 and 3.13 give immortal objects (None, small ints,
# interned strings) on 64-bit builds: Py_INCREF and Py_DECREF leave them alone (PEP 683).
IMMORTAL_REFCOUNT = 0xFFFFFFFF
# A refcount's size (Py_ssize_t), and more address bits than any 64-bit platform gives a process.
REFCOUNT_BYTES = 8
ADDRESS_BITS = 62
# glibc's mallopt() parameter for the most malloc arenas (malloc.h), and the
# most a worker needs: its main thread's, and one its request threads share.
M_ARENA_MAX = -8
MALLOC_ARENAS = 2


def prepare_to_fork() -> None:
    """Import what each worker would import for itself, let the app's start-up timers run out, freeze it all."""
    import_what_first_requests_import()
    let_timers_run_out()
    make_immortal()
    # The collector never visits frozen objects, so the workers' collections
    # do not write to (and so copy) the pages the app was loaded into.
    gc.freeze()


def make_immortal() -> None:
    """Make every object the app has loaded immortal, so the workers only read them.

    A worker that merely uses a function, a module or a constant writes to
    its refcount, and that write copies the whole 4 KB page it sits on: ~3 MB
    per worker, a third of its own memory. CPython skips those writes for
    immortal objects (PEP 683, which names pre-forking servers among its
    reasons). The cost: what the master holds now is never freed, as
    gc.freeze already ensures for the collector's part of it. An object of
    it dropped later is never finalized either (a file or socket stays open,
    __del__ and weakref callbacks never run), so an app should not leave
    connections open at import. sys.getrefcount reports IMMORTAL_REFCOUNT.
    """
    if not immortality_works():
        log.info("Python %s cannot make objects immortal: workers share less memory", sys.version.split()[0])
        return
    gc.unfreeze()  # get_objects lists unfrozen objects only
    refcounts = _refcounts()
    # Every object the collector tracks, then, round by round, what they hold
    # that it does not (strings, numbers, code objects and their constants).
    # Done in rounds, with one write into a view per object, it takes half the
    # time of one object at a time: this runs before the first worker can serve.
    batch = gc.get_objects()
    while batch:
        fresh = []
        for obj in batch:
            # Once each: what is done (even earlier in this batch) or immortal by birth reads as immortal.
            if sys.getrefcount(obj) != IMMORTAL_REFCOUNT and id(obj) % REFCOUNT_BYTES == 0:
                refcounts[id(obj) // REFCOUNT_BYTES] = IMMORTAL_REFCOUNT
                fresh.append(obj)
        batch = [ref for ref in gc.get_referents(*fresh) if not gc.is_tracked(ref)]
        batch += [const for obj in fresh if type(obj) is types.CodeType for const in obj.co_consts]


def immortality_works() -> bool:
    """Whether this CPython keeps a refcount of IMMORTAL_REFCOUNT as it is: tried on an object of our own."""
    if (
        sys.implementation.name != "cpython"
        or sys.version_info[:2] not in ((3, 12), (3, 13))
        or sys.maxsize < 2**63 - 1
        or sysconfig.get_config_var("Py_GIL_DISABLED")
        or hasattr(sys, "getobjects")  # a Py_TRACE_REFS build: the refcount is not the first field
    ):
        return False
    probe = object()
    try:
        _refcounts()[id(probe) // REFCOUNT_BYTES] = IMMORTAL_REFCOUNT
    except (ValueError, TypeError, OverflowError, MemoryError):  # a platform where the view cannot be made
        return False
    held = [probe, probe]
    kept = sys.getrefcount(probe) == IMMORTAL_REFCOUNT
    del held
    return kept and sys.getrefcount(probe) == IMMORTAL_REFCOUNT


def _refcounts() -> memoryview:
    """Every object's refcount, as the item at id(obj) // REFCOUNT_BYTES: the address space seen as refcounts.

    ob_refcnt is a PyObject's first field, at the address id() returns, and
    objects are aligned to at least its size. Nothing is read or written until an item is.
    """
    address_space = ctypes.c_char * (1 << ADDRESS_BITS)
    return memoryview(address_space.from_address(0)).cast("B").cast("q")


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
