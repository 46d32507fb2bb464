"""The fixture app, plus what an app commonly creates at import and its workers later use and drop.

The master imports this once (preload_app) and forks the workers; each
object here was made by the master. Whatever the master does to share its
memory, a worker must still see its buffered writes reach the file, its
finalizers run and the memory it drops given back.
"""

import atexit
import os
import weakref
from pathlib import Path

from .fixture_app import create_app

# The folder the test reads (set by the test).
FOLDER = Path(os.environ["NO_DATA_LOSS_DIR"])

app = create_app()

# A log file opened at import, buffered: its lines reach the disk when it is flushed or closed.
LINES = open(FOLDER / "lines.txt", "a", buffering=1 << 16)  # noqa: SIM115 (open for the life of the process)
# A line buffered at import, in the master: it must reach the file once, not once per process.
LINES.write(f"imported in {os.getpid()}\n")
# And a last line at every process's exit, from an exit handler the app registered at import.
atexit.register(lambda: LINES.write(f"exit of {os.getpid()}\n"))


class Resource:
    """Stands for a connection or a handle made at import."""


# Made at import; a worker drops one and expects its finalizer to run at once.
DROPPED = [Resource()]
# Made at import; lives until the worker exits, when its finalizer runs (weakref.finalize's atexit).
KEPT = Resource()
# Made at import, empty; a worker fills it, then drops it.
BALLAST = [bytearray()]
BALLAST_MB = 200


@app.get("/write-line")
def write_line():
    """A line into the import-time file, not flushed."""
    LINES.write(f"written by worker {os.getpid()}\n")
    return {"pid": os.getpid()}


@app.get("/finalizers")
def finalizers():
    """Register a finalizer on an import-time object and drop it, and one on an object the worker keeps."""
    weakref.finalize(KEPT, (FOLDER / "finalized-at-exit").touch)
    dropped = DROPPED.pop()
    weakref.finalize(dropped, (FOLDER / "finalized-when-dropped").touch)
    del dropped
    return {"finalized_when_dropped": (FOLDER / "finalized-when-dropped").exists()}


@app.get("/fill-ballast")
def fill_ballast():
    """Grow the import-time buffer by BALLAST_MB megabytes, every page touched."""
    BALLAST[0].extend(b"\x01" * (BALLAST_MB * 2**20))
    return {"pid": os.getpid(), "ballast_mb": len(BALLAST[0]) // 2**20}


@app.get("/drop-ballast")
def drop_ballast():
    """Drop the import-time buffer itself (not empty it): the worker holds it no more."""
    BALLAST.clear()
    return {"pid": os.getpid()}
