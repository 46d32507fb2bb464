"""Why a worker died, and when to stop replacing workers that keep dying.

gunicorn respawns a dead worker at once, forever. CrashGuard adds what PM2
does: a growing delay between quick deaths, and a clean exit after too many,
so a broken deploy stops burning CPU and Railway's restart policy takes over.
"""

import logging
import os
import signal
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

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

# A worker whose exit status the master could not learn: counted as unstable.
UNKNOWN_STATUS = "unknown status"
# How a worker asked to stop for shutdown ends: it exits, or the master's stop signal finds it
# already finishing (Python restores the default handlers while the interpreter shuts down).
STOP_STATUSES = ("exit code 0", "SIGTERM", "SIGINT", "SIGQUIT")


def describe_status(wait_status: int | None) -> str:
    """A waitpid() status as "exit code N" or the signal's name."""
    if wait_status is None:
        return UNKNOWN_STATUS
    code = os.waitstatus_to_exitcode(wait_status)
    if code >= 0:
        return f"exit code {code}"
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


# Each kind of death (a bounded label, for metrics) and the sentence the death line gives.
CAUSES = {
    "forced": "forced: still busy when the graceful timeout ran out",
    "shutdown": "stopped for shutdown",
    "early": "stopped for shutdown on a stop signal of its own (sent to the whole process group): not replaced",
    "memory": "recycled: over its memory limit",
    "timeout": "timed out: a request ran past the timeout",
    "killed": "killed: out of memory (OOM killer) or killed from outside",
    "overdue": "killed by the master: still running GRACEFUL_TIMEOUT after it was asked to stop",
    "clean": "exited cleanly: reached max_requests or was asked to stop",
    "unknown": "died with an exit status the master could not learn",
    "crashed": "crashed ({status})",
}


@dataclass(frozen=True)
class Death:
    """One worker's end, as the master saw it."""

    status: str
    lifetime: float
    timed_out: bool = False
    over_memory: bool = False
    shutting_down: bool = False
    # The master was stopping (lame duck, drain) but had not told its workers to yet.
    stopping: bool = False
    # The master killed it: asked to stop alone (retired, recycled), it was still running after GRACEFUL_TIMEOUT.
    overdue: bool = False

    @property
    def kind(self) -> str:
        """Which of CAUSES this death is."""
        if self.shutting_down:
            return "forced" if self.status == "SIGKILL" else "shutdown"
        if self.stopping and self.status in STOP_STATUSES and not (self.over_memory or self.timed_out):
            return "early"
        if self.over_memory:
            return "memory"
        if self.timed_out:
            return "timeout"
        if self.status == "SIGKILL":
            return "overdue" if self.overdue else "killed"
        if self.status in ("exit code 0", "SIGTERM"):
            return "clean"
        if self.status == UNKNOWN_STATUS:
            return "unknown"
        return "crashed"

    @property
    def cause(self) -> str:
        return CAUSES[self.kind].format(status=self.status)

    @property
    def clean_stop(self) -> bool:
        """A worker that stopped because the cluster is shutting down, and did so itself: nothing died."""
        return (self.shutting_down and self.status in STOP_STATUSES) or self.kind == "early"

    @property
    def intended(self) -> bool:
        """Deaths the cluster caused on purpose never count as instability."""
        on_purpose = self.shutting_down or self.over_memory or self.kind in ("early", "overdue")
        return on_purpose or self.status == "exit code 0"


class CrashGuard:
    """Counts unstable deaths, spaces out replacements, and decides when to give up."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.streak = 0
        self.last_unstable = float("-inf")
        # The master spawns no worker before this moment (its clock).
        self.next_spawn = float("-inf")

    def record(self, death: Death) -> None:
        if death.intended or death.lifetime >= MIN_UPTIME:
            return
        now = self.clock()
        if now - self.last_unstable > STREAK_RESET:
            self.streak = 0
        self.streak += 1
        self.last_unstable = now
        self.next_spawn = now + self.delay()

    @property
    def exhausted(self) -> bool:
        return self.streak >= MAX_UNSTABLE

    def delay(self) -> float:
        """Seconds to wait before the next spawn; 0 unless workers are dying young."""
        if not self.streak or self.clock() - self.last_unstable > STREAK_RESET:
            return 0.0
        return min(BACKOFF_BASE * BACKOFF_GROWTH ** (self.streak - 1), BACKOFF_MAX)

    def seconds_until_spawn(self) -> float:
        """How long the master must still hold back new workers (0: spawn now)."""
        return max(0.0, self.next_spawn - self.clock())


def log_death(number: int, pid: int, death: Death) -> None:
    """One line per death: the worker, its exit status, its lifetime and the likely cause.

    A clean stop at shutdown (Ctrl-C, SIGTERM) says "stopped", and a recycle the worker finished itself "retired",
    without the signal; its status stays in the fields.
    """
    if death.clean_stop:
        message, facts = "Worker %s stopped (pid %s, lived %.1fs): %s", (pid, death.lifetime)
    elif death.kind == "memory" and death.status in STOP_STATUSES:
        message, facts = "Worker %s retired (pid %s, lived %.1fs): %s", (pid, death.lifetime)
    else:
        message, facts = "Worker %s died (pid %s, %s, lived %.1fs): %s", (pid, death.status, death.lifetime)
    log.log(
        logging.INFO if death.intended else logging.WARNING,
        message,
        number,
        *facts,
        death.cause,
        extra={
            "worker": number,
            "worker_pid": pid,
            "status": death.status,
            "lifetime_s": round(death.lifetime, 3),
            "cause": death.cause,
        },
    )
