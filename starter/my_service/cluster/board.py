"""The scoreboard: a small shared-memory file every process of the cluster can read.

The master writes its own facts and clears a worker's slot when it dies; each
worker, once ready to serve, writes its pid, start time, oldest request in
flight and request count into its own slot. The health endpoint reads live
workers from it without any I/O, and the status command reads it from outside
the cluster.
"""

import mmap
import os
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# master pid, configured workers, master start time
HEADER = struct.Struct("<iid")
# worker pid (0 when the slot is free), worker start time,
# start of its oldest request in flight (0 when idle), requests served
SLOT = struct.Struct("<iddQ")
BUSY_SINCE = struct.Struct("<d")
REQUESTS = struct.Struct("<Q")
BUSY_SINCE_OFFSET = struct.calcsize("<id")
REQUESTS_OFFSET = struct.calcsize("<idd")
# More than any sane worker count; TTIN can add workers beyond the first size.
MAX_SLOTS = 256
SIZE = HEADER.size + MAX_SLOTS * SLOT.size

_current: "Board | None" = None


def runtime_dir(port: int, base: str | None = None) -> Path:
    """The folder for this server's scoreboard, one per port."""
    base = base or os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / f"my-service-{port}"


@dataclass(frozen=True)
class WorkerSlot:
    index: int
    pid: int
    started: float
    busy_since: float
    requests: int


class Board:
    """A fixed-size record of the master and its workers, mapped into memory."""

    def __init__(self, memory: mmap.mmap):
        self.memory = memory

    @classmethod
    def create(cls, path: Path) -> "Board":
        """Make a fresh, zeroed board at `path` (the master calls this once)."""
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(path, "w+b") as file:
            file.truncate(SIZE)
            return cls(mmap.mmap(file.fileno(), SIZE))

    @classmethod
    def open(cls, path: Path) -> "Board":
        """Map an existing board read-only (for the status command)."""
        with open(path, "rb") as file:
            return cls(mmap.mmap(file.fileno(), SIZE, access=mmap.ACCESS_READ))

    def set_master(self, pid: int, workers: int) -> None:
        HEADER.pack_into(self.memory, 0, pid, workers, time.time())

    def set_configured(self, workers: int) -> None:
        pid, _, started = self.master()
        HEADER.pack_into(self.memory, 0, pid, workers, started)

    def master(self) -> tuple[int, int, float]:
        """The master's pid, its configured worker count and its start time."""
        return HEADER.unpack_from(self.memory, 0)

    def claim(self, index: int, pid: int) -> None:
        SLOT.pack_into(self.memory, _offset(index), pid, time.time(), 0.0, 0)

    def release(self, index: int) -> None:
        SLOT.pack_into(self.memory, _offset(index), 0, 0.0, 0.0, 0)

    # Only the worker owning a slot writes these two, so no lock is needed.

    def set_busy_since(self, index: int, since: float) -> None:
        BUSY_SINCE.pack_into(self.memory, _offset(index) + BUSY_SINCE_OFFSET, since)

    def set_requests(self, index: int, served: int) -> None:
        REQUESTS.pack_into(self.memory, _offset(index) + REQUESTS_OFFSET, served)

    def busy_since(self, index: int) -> float:
        return BUSY_SINCE.unpack_from(self.memory, _offset(index) + BUSY_SINCE_OFFSET)[0]

    def workers(self) -> list[WorkerSlot]:
        """Every live worker, by index."""
        slots = (WorkerSlot(index, *SLOT.unpack_from(self.memory, _offset(index))) for index in range(MAX_SLOTS))
        return [slot for slot in slots if slot.pid]


def _offset(index: int) -> int:
    return HEADER.size + index * SLOT.size


def attach(board: Board | None) -> None:
    """Make `board` this process's board (set in the master, inherited by workers)."""
    global _current
    _current = board


def current() -> Board | None:
    """This process's board, or None outside a gunicorn cluster (tests, flask run)."""
    return _current
