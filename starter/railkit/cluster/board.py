"""The scoreboard: a small shared-memory file every process of the cluster can read.

The master writes its own facts (and, once SIGTERM arrives, when stopping
began and when it told the workers to stop) and clears a worker's slot when
it dies; each worker, once ready to serve, writes its pid, start time, the
request its app has worked on longest, its request count, how many requests
it holds and, while it accepts, how many connections into its own slot. The
health endpoint reads it without any I/O, the status command reads it from
outside the cluster, and the workers share out accepts by it (workers/balance.py).

The board lives in a private folder made for this one master (runtime.py),
and is removed with it at exit.
"""

import mmap
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path

# Every 8-byte field sits at a multiple of 8, and the header and each slot
# fill whole 64-byte cache lines, so no field straddles two lines. The fields
# written while others read (busy_since, the counts) are int64s, which struct
# copies as one 8-byte word (a double goes through a portable byte-wise
# encoder): a reader sees a write whole or not at all. A torn busy_since would
# read as a request stuck for decades, and the watchdog would abort a healthy worker.
CACHE_LINE = 64

# master pid, configured workers, master start time, when stopping began (0: serving),
# when the master told the workers to stop (0: not yet); padded to a cache line.
HEADER = struct.Struct("<qqddd24x")
# One of the header's times, read or written alone.
TIMESTAMP = struct.Struct("<d")
STOPPING_SINCE_OFFSET = struct.calcsize("<qqd")
WORKERS_STOPPED_OFFSET = struct.calcsize("<qqdd")
# worker pid (0 when the slot is free), worker start time, start of the app's
# longest-running work on a request (microseconds since the epoch, 0 when idle),
# requests served, requests in flight, connections held while accepting (NOT_ACCEPTING
# otherwise); then, from the next cache line, that longest request as
# "METHOD path request-id" (for the watchdog's lines).
SLOT = struct.Struct("<qdqqqq16x256s")
COUNT = struct.Struct("<q")
LABEL = struct.Struct("<256s")
# The slot's numbers alone: what listing the workers needs.
FACTS = struct.Struct("<qdqq")
BUSY_OFFSET = struct.calcsize("<qd")
REQUESTS_OFFSET = struct.calcsize("<qdq")
IN_FLIGHT_OFFSET = struct.calcsize("<qdqq")
CONNECTIONS_OFFSET = struct.calcsize("<qdqqq")
# A worker's connection count while it does not accept (stopping, paused): its share is not reckoned.
NOT_ACCEPTING = -1
LABEL_OFFSET = CACHE_LINE
MICROSECONDS = 1_000_000
# Twice the most workers WEB_CONCURRENCY allows (256): a SIGHUP reload starts
# the new workers before the old ones stop, so both sets need slots at once.
MAX_SLOTS = 512
SIZE = HEADER.size + MAX_SLOTS * SLOT.size
FILE_NAME = "workers.board"

_current: "Board | None" = None


@dataclass(frozen=True)
class WorkerSlot:
    index: int
    pid: int
    started: float
    busy_since: float
    requests: int


class Board:
    """A fixed-size record of the master and its workers, mapped into memory."""

    def __init__(self, memory: mmap.mmap, path: Path):
        self.memory = memory
        self.path = path

    @classmethod
    def create(cls, folder: Path) -> "Board":
        """Make a fresh, zeroed board in `folder`; never through a planted file or symlink."""
        path = folder / FILE_NAME
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(descriptor, "w+b") as file:
            file.truncate(SIZE)
            return cls(mmap.mmap(file.fileno(), SIZE), path)

    @classmethod
    def open(cls, path: Path) -> "Board":
        """Map an existing board read-only (for the status command)."""
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(descriptor, "rb") as file:
            return cls(mmap.mmap(file.fileno(), SIZE, access=mmap.ACCESS_READ), path)

    def set_master(self, pid: int, workers: int) -> None:
        HEADER.pack_into(self.memory, 0, pid, workers, time.time(), 0.0, 0.0)

    def set_configured(self, workers: int) -> None:
        pid, _, started = self.master()
        HEADER.pack_into(self.memory, 0, pid, workers, started, self.stopping_since(), self.workers_stopped_since())

    def master(self) -> tuple[int, int, float]:
        """The master's pid, its configured worker count and its start time."""
        return HEADER.unpack_from(self.memory, 0)[:3]

    def set_stopping(self, since: float) -> None:
        TIMESTAMP.pack_into(self.memory, STOPPING_SINCE_OFFSET, since)

    def stopping_since(self) -> float:
        """When the master began to stop (0 while serving normally)."""
        return TIMESTAMP.unpack_from(self.memory, STOPPING_SINCE_OFFSET)[0]

    def set_workers_stopped(self, since: float) -> None:
        TIMESTAMP.pack_into(self.memory, WORKERS_STOPPED_OFFSET, since)

    def workers_stopped_since(self) -> float:
        """When the master told its workers to stop (0: not yet); a worker still booting then missed the signal."""
        return TIMESTAMP.unpack_from(self.memory, WORKERS_STOPPED_OFFSET)[0]

    def claim(self, index: int, pid: int) -> None:
        SLOT.pack_into(self.memory, _offset(index), pid, time.time(), 0, 0, 0, 0, b"")

    def release(self, index: int) -> None:
        SLOT.pack_into(self.memory, _offset(index), 0, 0.0, 0, 0, 0, NOT_ACCEPTING, b"")

    # Only the worker owning a slot writes these, so no lock is needed; each
    # number is one aligned 8-byte store, which a reader sees whole or not at all.

    def set_busy(self, index: int, since: float, label: str) -> None:
        LABEL.pack_into(self.memory, _offset(index) + LABEL_OFFSET, label.encode("utf-8", "replace")[: LABEL.size])
        COUNT.pack_into(self.memory, _offset(index) + BUSY_OFFSET, round(since * MICROSECONDS))

    def set_requests(self, index: int, served: int) -> None:
        COUNT.pack_into(self.memory, _offset(index) + REQUESTS_OFFSET, served)

    def set_in_flight(self, index: int, requests: int) -> None:
        COUNT.pack_into(self.memory, _offset(index) + IN_FLIGHT_OFFSET, requests)

    def in_flight(self, index: int) -> int:
        """Requests the worker holds, from its hook before the app to its hook after it."""
        return COUNT.unpack_from(self.memory, _offset(index) + IN_FLIGHT_OFFSET)[0]

    def set_connections(self, index: int, held: int) -> None:
        COUNT.pack_into(self.memory, _offset(index) + CONNECTIONS_OFFSET, held)

    def accepting_connections(self, below: int) -> list[int]:
        """The connections each live worker in a slot under `below` holds, for those accepting."""
        counts = []
        for index in range(min(below, MAX_SLOTS)):
            offset = _offset(index)
            if COUNT.unpack_from(self.memory, offset)[0]:
                held = COUNT.unpack_from(self.memory, offset + CONNECTIONS_OFFSET)[0]
                if held != NOT_ACCEPTING:
                    counts.append(held)
        return counts

    def slots_in_use(self) -> int:
        """One past the highest slot a live worker holds (0 when none does)."""
        return max((slot.index + 1 for slot in self.workers()), default=0)

    def busy_since(self, index: int) -> float:
        return COUNT.unpack_from(self.memory, _offset(index) + BUSY_OFFSET)[0] / MICROSECONDS

    def busy_label(self, index: int) -> str:
        raw = LABEL.unpack_from(self.memory, _offset(index) + LABEL_OFFSET)[0]
        return raw.rstrip(b"\0").decode("utf-8", "replace")

    def workers(self) -> list[WorkerSlot]:
        """Every live worker, by index."""
        found = []
        for index in range(MAX_SLOTS):
            pid, started, busy, requests = FACTS.unpack_from(self.memory, _offset(index))
            if pid:
                found.append(WorkerSlot(index, pid, started, busy / MICROSECONDS, requests))
        return found

    def free_slot(self, taken: set[int]) -> int | None:
        """The lowest slot index not in `taken`, or None when every slot is in use."""
        return next((index for index in range(MAX_SLOTS) if index not in taken), None)


def _offset(index: int) -> int:
    return HEADER.size + index * SLOT.size


def attach(board: Board | None) -> None:
    """Make `board` this process's board (set in the master, inherited by workers)."""
    global _current
    _current = board


def current() -> Board | None:
    """This process's board, or None outside a gunicorn cluster (tests, flask run)."""
    return _current
