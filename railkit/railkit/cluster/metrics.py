"""Prometheus metrics for the whole replica: the shared folder, and the master's own events.

Every gunicorn process is its own Python, so prometheus_client runs in
multiprocess mode: each process writes its numbers to files in one folder and
whoever serves /metrics adds them up. The folder lives in the master's
private runtime folder (runtime.py: 0700, fresh per start, removed at exit or
by the next start after a SIGKILL). prometheus_client picks its mode when it
is first imported, so the master creates the folder while gunicorn reads its
config, and gunicorn exports it to the environment before it loads the app
(raw_env).

A dead worker's counters and histograms stay counted: its files are folded
into one archive file (so recycled workers do not pile up files and slow every
scrape), and its live gauges are dropped. Scrapes take a shared lock on the
folder and the fold an exclusive one, so no scrape sees a count twice or not
at all. The master never waits for the lock: while a scrape holds it, the
fold is left to a later pass of its loop.

prometheus_client is imported inside the functions below: this module is
imported with gunicorn.conf.py, before the folder exists.
"""

import contextlib
import fcntl
import functools
import os
from pathlib import Path

from .. import project
from .lifecycle import CAUSES

# prometheus_client reads this variable when it is first imported.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The metrics folder's name inside the master's runtime folder.
FOLDER_NAME = "metrics"
# Every metric's name starts with the package's name.
PREFIX = project.METRICS_PREFIX
# Taken shared by scrapes and exclusive by the master while it folds a dead worker's files.
LOCK_FILE = ".lock"
# File kinds whose values add up across processes, so a dead worker's can be folded into one.
ADDITIVE_KINDS = ("counter", "histogram")

# Dead workers whose files are not folded yet (a scrape held the folder when they died).
_unfolded: set[int] = set()


def multiprocess_env(instance_folder: Path) -> list[str]:
    """gunicorn's raw_env entry naming the metrics folder inside this master's private folder."""
    path = instance_folder / FOLDER_NAME
    if not path.exists():
        path.mkdir(mode=0o700)
        (path / LOCK_FILE).touch(mode=0o600)
    return [f"{MULTIPROC_ENV}={path}"]


def current_folder() -> Path | None:
    """The folder this process writes to, or None outside a gunicorn cluster."""
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


@contextlib.contextmanager
def folder_lock(folder: Path, exclusive: bool):
    with open(folder / LOCK_FILE, "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield


def forget_worker(pid: int) -> None:
    """In child_exit, without waiting: drop a dead worker's live gauges; fold its counts now, or on a later pass."""
    folder = current_folder()
    if folder is None:
        return
    from prometheus_client import multiprocess

    # Scrapes already skip a live gauge's file that vanishes under them.
    multiprocess.mark_process_dead(pid, str(folder))
    _unfolded.add(pid)
    fold_dead_workers(alive=())


def fold_dead_workers(alive) -> None:
    """Fold dead workers' counts into the archive if no scrape holds the folder now; never waits.

    The master calls it from child_exit and on each pass of its loop. Until
    folded, a dead worker's files stay in the folder and are counted as they are.
    """
    folder = current_folder()
    if not _unfolded or folder is None:
        return
    # A new worker that got a dead one's pid carries on in its files: they are its own now.
    _unfolded.difference_update(alive)
    with open(folder / LOCK_FILE, "a+b") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # a scrape holds the folder; the hook or the loop must not wait for it
        for pid in sorted(_unfolded):
            _fold(folder, pid)
        _unfolded.clear()


def _fold(folder: Path, pid: int) -> None:
    from prometheus_client.mmap_dict import MmapedDict

    for kind in ADDITIVE_KINDS:
        dead = folder / f"{kind}_{pid}.db"
        if not dead.exists():
            continue
        archive = MmapedDict(str(folder / f"{kind}_archive.db"))
        try:
            for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(str(dead)):
                total, _ = archive.read_value(key)
                archive.write_value(key, total + value, timestamp)
        finally:
            archive.close()
        dead.unlink()


@functools.cache
def _events():
    """The master's counters, made on first use (after gunicorn exported the folder)."""
    from prometheus_client import Counter

    deaths = Counter(f"{PREFIX}_worker_deaths_total", "Workers that died, by cause", ["cause"])
    for cause in CAUSES:
        # Every cause shows from the start, at 0, so rate() and alerts see it.
        deaths.labels(cause)
    return {
        "starts": Counter(f"{PREFIX}_worker_starts_total", "Workers forked by the master"),
        "deaths": deaths,
        "recycles": Counter(f"{PREFIX}_memory_recycles_total", "Workers recycled for passing their memory limit"),
        "aborts": Counter(f"{PREFIX}_stuck_request_aborts_total", "Workers aborted for a request past the timeout"),
        "backoffs": Counter(f"{PREFIX}_crash_loop_backoffs_total", "Spawns delayed because workers kept dying young"),
        "backoff_seconds": Counter(f"{PREFIX}_crash_loop_backoff_seconds_total", "Seconds spawns were delayed"),
    }


def record_worker_start() -> None:
    _events()["starts"].inc()


def record_death(death) -> None:
    """Count a lifecycle.Death under a short, bounded cause."""
    _events()["deaths"].labels(death.kind).inc()


def record_recycle() -> None:
    _events()["recycles"].inc()


def record_abort() -> None:
    _events()["aborts"].inc()


def record_backoff(seconds: float) -> None:
    events = _events()
    events["backoffs"].inc()
    events["backoff_seconds"].inc(seconds)
