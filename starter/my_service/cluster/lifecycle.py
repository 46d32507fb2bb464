"""Why a worker died, and when to stop replacing workers that keep dying.

gunicorn respawns a dead worker at once, forever. CrashGuard adds what PM2
does: a growing delay between quick deaths, and a clean exit after too many,
so a broken deploy stops burning CPU and Railway's restart policy takes over.
"""

import logging
import re
import time
from dataclasses import dataclass

# A worker that dies sooner than this after starting counts as unstable.
MIN_UPTIME = 1.0
# Delay before replacing an unstable worker: BASE x GROWTH^(n-1), capped.
BACKOFF_BASE = 0.1
BACKOFF_GROWTH = 1.5
BACKOFF_MAX = 15.0
# An unstable death this long after the previous one starts a new count.
STREAK_RESET = 30.0
# After this many unstable deaths in a row, the master gives up.
MAX_UNSTABLE = 10

# gunicorn's reaper logs the exit status just before calling child_exit, the
# only place the status is reported; the hook itself does not receive it.
_SIGNALED = re.compile(r"^Worker \(pid:%s\) was sent %s!")
_EXITED = re.compile(r"^Worker \(pid:%s\) exited with code %s\.")


class ExitRecorder(logging.Filter):
    """Keeps each worker's exit status from gunicorn's reaper log lines.

    The lines themselves are dropped: the cluster logs one richer line per
    death instead (gunicorn calls every SIGKILL "Perhaps out of memory?",
    even the ones it sent).
    """

    def __init__(self):
        super().__init__()
        self.statuses: dict[int, str] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if _SIGNALED.match(message):
            pid, signal_name = record.args[:2]
            self.statuses[pid] = str(signal_name)
            return False
        if _EXITED.match(message):
            pid, code = record.args[:2]
            self.statuses[pid] = f"exit code {code}"
            return False
        return True

    def pop(self, pid: int) -> str:
        """The status of `pid`; gunicorn logs nothing for a clean exit."""
        return self.statuses.pop(pid, "exit code 0")


@dataclass(frozen=True)
class Death:
    """One worker's end, as the master saw it."""

    status: str
    lifetime: float
    timed_out: bool = False
    over_memory: bool = False
    shutting_down: bool = False

    @property
    def cause(self) -> str:
        if self.shutting_down:
            if self.status == "SIGKILL":
                return "forced: still busy when the graceful timeout ran out"
            return "stopped for shutdown"
        if self.over_memory:
            return "recycled: over its memory limit"
        if self.timed_out:
            return "timed out: a request ran past the timeout"
        if self.status == "SIGKILL":
            return "killed: out of memory (OOM killer) or killed from outside"
        if self.status in ("exit code 0", "SIGTERM"):
            return "exited cleanly: reached max_requests or was asked to stop"
        return f"crashed ({self.status})"

    @property
    def intended(self) -> bool:
        """Deaths the cluster caused on purpose never count as instability."""
        return self.shutting_down or self.over_memory or self.status == "exit code 0"


class CrashGuard:
    """Counts unstable deaths, spaces out replacements, and decides when to give up."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.streak = 0
        self.last_unstable = float("-inf")

    def record(self, death: Death) -> None:
        if death.intended or death.lifetime >= MIN_UPTIME:
            return
        now = self.clock()
        if now - self.last_unstable > STREAK_RESET:
            self.streak = 0
        self.streak += 1
        self.last_unstable = now

    @property
    def exhausted(self) -> bool:
        return self.streak >= MAX_UNSTABLE

    def delay(self) -> float:
        """Seconds to wait before the next spawn; 0 unless workers are dying young."""
        if not self.streak or self.clock() - self.last_unstable > STREAK_RESET:
            return 0.0
        return min(BACKOFF_BASE * BACKOFF_GROWTH ** (self.streak - 1), BACKOFF_MAX)
