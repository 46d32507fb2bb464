"""Work beside the requests in every worker: started after the fork, stopped before the worker exits.

gunicorn's master loads the app once and forks the workers from it, and a fork copies no thread:
a thread the app starts while it loads would run in the master only (the cluster refuses to start
with one, preload.refuse_threads_started_while_loading). A function registered with
`in_every_worker` is started in a thread of its own in each worker once the worker serves, and is
asked to stop (its `stop` event is set) when the worker exits, then waited for.
"""

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["in_every_worker"]

log = logging.getLogger(__name__)

_tasks: list[Callable[[threading.Event], object]] = []
# This process's running tasks and the event that stops them (a worker's own, made after the fork).
_running: list[threading.Thread] = []
_stop: threading.Event | None = None


def in_every_worker(func: Callable[[threading.Event], object]) -> Callable[[threading.Event], object]:
    """Run `func(stop)` in a thread of every worker, from its start until it exits; returns `func` unchanged.

    `stop` is a threading.Event set when the worker stops: loop with `while not stop.wait(seconds):`.
    An exception ends the task with one log line and its traceback; it is not restarted. Tasks run
    under the cluster only (`python -m railkit.cluster serve`, `gunicorn main:app`), not under
    `flask run` or in tests: call `func(threading.Event())` there yourself.
    """
    if not callable(func):
        raise TypeError(f"in_every_worker needs a function taking a stop event, not {func!r}")
    if func not in _tasks:
        _tasks.append(func)
    return func


def task_name(func: Callable) -> str:
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"


def start() -> None:
    """Start every registered task in this worker."""
    global _stop
    _stop = threading.Event()
    _running.clear()
    for func in _tasks:
        # Daemon: a task that ignores its stop event cannot keep the worker alive (stop() says so).
        thread = threading.Thread(target=_run, args=(func, _stop), name=task_name(func), daemon=True)
        thread.start()
        _running.append(thread)


def stop(timeout: float) -> list[str]:
    """Ask this worker's tasks to stop and wait for them, `timeout` seconds in all; the names of those still running."""
    if _stop is None:
        return []
    _stop.set()
    deadline = time.monotonic() + timeout
    for thread in _running:
        thread.join(max(0.0, deadline - time.monotonic()))
    late = [thread.name for thread in _running if thread.is_alive()]
    if late:
        log.warning(
            "Background tasks still running %.0fs after they were asked to stop, left behind: %s",
            timeout,
            ", ".join(late),
            extra={"tasks": late},
        )
    return late


def _run(func: Callable[[threading.Event], object], stop_event: threading.Event) -> None:
    try:
        func(stop_event)
    except Exception:
        log.exception(
            "Background task %s failed; it is not restarted", task_name(func), extra={"task": task_name(func)}
        )
