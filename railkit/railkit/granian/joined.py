"""What other platform modules join to the cluster's server hooks (railkit.db), run at the same moments under granian.

railkit.db joins gunicorn's on_starting (size each worker's pool, in the
master, once the app is loaded), post_fork (drop the pool a worker inherited)
and worker_exit (close the worker's pool) through cluster/hooks.join. granian
has no such hooks: serve.py, worker.py and the worker's exit duties call the
joined work here instead, with what gunicorn would pass (no gunicorn config:
granian has none, and nothing under gthread or sync reads it).
"""

from ..cluster import hooks
from ..cluster.sizing import ClusterSize
from ..settings import Settings


def _joined(hook: str) -> list:
    # cluster/hooks.py keeps the registry to itself; read here, where nothing else reads it.
    return list(hooks._joined[hook])


def on_starting(settings: Settings, size: ClusterSize) -> None:
    """In the master, after the app is loaded and before any fork."""
    for callback in _joined("on_starting"):
        callback(settings, size, None)


def post_fork() -> None:
    """In a new worker, before it serves."""
    for callback in _joined("post_fork"):
        callback()


def worker_exit() -> None:
    """In a worker stopping gracefully, before its atexit handlers."""
    for callback in _joined("worker_exit"):
        callback()
