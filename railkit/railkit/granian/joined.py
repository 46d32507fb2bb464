"""What other platform modules join to the cluster's server hooks (railkit.db), run at the same moments under granian.

railkit.db joins gunicorn's on_starting (the connection budget, in the master,
once the app is loaded), nworkers_changed (TTIN/TTOU: more workers only if
their pools fit), post_fork (drop the pool a worker inherited) and worker_exit
(close the worker's pool) through cluster/hooks.join. granian has no such
hooks: serve.py, the supervisor and the worker call the joined work here
instead, with what gunicorn would pass (no gunicorn config: granian has none,
and nothing under gthread or sync reads it). on_reload has no moment here: a
granian SIGHUP replaces the workers with as many, on the app the master
loaded, so the budget decided at the start stands.
"""

from ..cluster import hooks
from ..cluster.sizing import ClusterSize
from ..settings import Settings


class WorkerCount:
    """What nworkers_changed's callbacks read and may set back, as they do gunicorn's arbiter's num_workers."""

    def __init__(self, num_workers: int):
        self.num_workers = num_workers


def on_starting(settings: Settings, size: ClusterSize) -> None:
    """In the master, after the app is loaded and before any fork."""
    for callback in hooks.joined("on_starting"):
        callback(settings, size, None)


def nworkers_changed(new: int, old: int) -> int:
    """In the master, on TTIN/TTOU asking for `new` workers instead of `old`: the count the joined work keeps."""
    count = WorkerCount(new)
    for callback in hooks.joined("nworkers_changed"):
        callback(count, new, old)
    return count.num_workers


def post_fork() -> None:
    """In a new worker, before it serves."""
    for callback in hooks.joined("post_fork"):
        callback()


def worker_exit() -> None:
    """In a worker stopping gracefully, before its atexit handlers."""
    for callback in hooks.joined("worker_exit"):
        callback()
