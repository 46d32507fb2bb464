"""The one place where the web side (railkit.web) reads the server side (railkit.cluster).

Request layers need a few facts only the cluster knows: how many workers share
the replica, whether it is stopping, each worker's memory, where the
Prometheus files of every process go, and the errors a worker's reader raises
while the app reads a body. They read them here and nowhere else, and the
cluster never imports the web side (tests/test_import_graph.py).
"""

from .cluster import board
from .cluster.errors import ClientError
from .cluster.metrics import PREFIX as METRICS_PREFIX
from .cluster.metrics import current_folder as metrics_folder
from .cluster.metrics import folder_lock as metrics_folder_lock
from .cluster.watchdog import unique_memory_mb

__all__ = [
    "METRICS_PREFIX",
    "ClientError",
    "current_board",
    "metrics_folder",
    "metrics_folder_lock",
    "stopping",
    "unique_memory_mb",
    "workers_in_replica",
]


def current_board() -> board.Board | None:
    """The replica's scoreboard, or None outside gunicorn (flask run, tests)."""
    return board.current()


def workers_in_replica() -> int:
    """How many workers the master keeps running (1 outside gunicorn).

    The app is built in the master before any worker exists; the board knows the count by the first request.
    """
    scoreboard = board.current()
    return max(1, scoreboard.master()[1]) if scoreboard else 1


def stopping() -> bool:
    """Whether the replica got SIGTERM and is in its lame-duck phase."""
    scoreboard = board.current()
    return bool(scoreboard is not None and scoreboard.stopping_since())
