"""The master's last steps with the preloaded app before it forks workers.

gunicorn.conf.py loads the app once in the master (preload_app), so every
worker starts with the master's memory and shares it until it writes to it.
"""

import codecs
import contextlib
import gc
import importlib
import threading

# Longest wait for a timer the app armed while loading (s). limits' in-memory
# storage arms one of 0.01 s; a timer still pending at the deadline is left alone.
TIMER_DEADLINE = 1.0


def prepare_to_fork() -> None:
    """Import what each worker would import for itself, let the app's start-up timers run out, freeze it all."""
    import_what_first_requests_import()
    let_timers_run_out()
    # The collector never visits frozen objects, so the workers' collections
    # do not write to (and so copy) the pages the app was loaded into.
    gc.freeze()


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
