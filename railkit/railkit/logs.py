"""JSON lines on stdout, the shape Railway's log viewer parses.

Railway reads `message` and `level` (debug, info, warn, error) from each line
and turns every other key into a filterable attribute. It shows anything on
stderr as an error, so every logger here, gunicorn's included, writes stdout.
"""

import logging
import logging.config
import os
import re
import threading
import time
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

# Set by the app for the length of one request; read by every log line.
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

RAILWAY_LEVELS = {"DEBUG": "debug", "INFO": "info", "WARNING": "warn", "ERROR": "error", "CRITICAL": "error"}

# Railway keeps 500 log lines per second per replica and drops the rest, the
# lines that matter included. A replica's workers share this many per second
# for everything a request can make them log (app lines, the access log,
# gunicorn's warnings). Any second of wall time spans two budget seconds, so
# it can see twice this; the rest of the 500 is kept for lifecycle lines (the
# master's, and the cluster's own in workers) and one summary line per worker.
WORKER_LINES_PER_SECOND = 200
# Never budgeted: the cluster's lifecycle (starts, deaths, recycles, stacks, stops).
LIFECYCLE_LOGGER = "railkit.cluster"
# gunicorn's warnings about a worker itself ("Worker graceful timeout"); its info lines are all lifecycle.
GUNICORN_WORKER_STORY = "Worker "
# gunicorn's line for each request it cannot parse; a flood of them is summed per second.
INVALID_REQUEST = "Invalid request from ip="
# Invalid requests shown in full per worker and second; the rest are only counted.
INVALID_REQUESTS_SHOWN = 1
# Terminal colours (werkzeug's development server colours its request lines): noise in JSON.
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


class RailwayFormatter(JsonFormatter):
    """One JSON object per line with `message`, Railway's `level`, and the extras."""

    def add_fields(self, log_record, record, message_dict):
        super().add_fields(log_record, record, message_dict)
        log_record["level"] = RAILWAY_LEVELS.get(record.levelname, "info")
        message = log_record.get("message")
        if isinstance(message, str) and "\x1b[" in message:
            log_record["message"] = ANSI_ESCAPE.sub("", message)


class RequestIdFilter(logging.Filter):
    """Stamps the current request's id on every line logged while serving it."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = request_id.get()
        if current is not None and not hasattr(record, "request_id"):
            record.request_id = current
        return True


class LineBudget(logging.Filter):
    """Keeps a worker's stdout within its share of Railway's line rate; says each second what it held back.

    Lines from the master and from the cluster's lifecycle loggers always
    pass. A worker's other lines pass up to its share of
    WORKER_LINES_PER_SECOND; gunicorn's invalid-request warnings past the first
    are counted, and the counts come out as one line per second, e.g.
    "4,000 invalid requests in the last second".
    """

    def __init__(self):
        super().__init__()
        self.master_pid = os.getpid()
        self.lock = threading.Lock()
        self.window = 0
        self.used = 0
        self.invalid = 0
        self.skipped = 0
        self.flush_pending = False

    def filter(self, record: logging.LogRecord) -> bool:
        if record.process == self.master_pid or _is_lifecycle(record):
            return True
        if getattr(record, "summary", False):
            return True
        invalid = record.name == "gunicorn.error" and str(record.msg).startswith(INVALID_REQUEST)
        with self.lock:
            summary = self._roll()
            if invalid:
                self.invalid += 1
                allowed = self.invalid <= INVALID_REQUESTS_SHOWN
            else:
                allowed = self.used < max(1, WORKER_LINES_PER_SECOND // _workers_in_replica())
                self.skipped += not allowed
            self.used += allowed
            start_timer = not allowed and not self.flush_pending
            self.flush_pending |= start_timer
        _log_summary(summary)
        if start_timer:
            # Say what was held back even if nothing else is logged after it.
            timer = threading.Timer(1.0, self.flush)
            timer.daemon = True
            timer.start()
        return allowed

    def flush(self) -> None:
        with self.lock:
            self.flush_pending = False
            summary = self._roll()
        _log_summary(summary)

    def _roll(self) -> tuple[int, int] | None:
        """Start a new one-second window if it is time; return the last one's held-back counts."""
        now = int(time.monotonic())
        if now == self.window:
            return None
        held_back = (self.invalid, self.skipped) if self.invalid > INVALID_REQUESTS_SHOWN or self.skipped else None
        self.window, self.used, self.invalid, self.skipped = now, 0, 0, 0
        return held_back


def _is_lifecycle(record: logging.LogRecord) -> bool:
    """The cluster's own lines, and gunicorn's worker story: booting, exiting, restarting."""
    if record.name.startswith(LIFECYCLE_LOGGER):
        return True
    return record.name == "gunicorn.error" and (
        record.levelno == logging.INFO or str(record.msg).startswith(GUNICORN_WORKER_STORY)
    )


def _workers_in_replica() -> int:
    # Imported here: the cluster imports this module for its logger.
    from .seam import workers_in_replica

    return workers_in_replica()


def _log_summary(summary: tuple[int, int] | None) -> None:
    if not summary:
        return
    invalid, skipped = summary
    parts = []
    if invalid:
        parts.append(f"{invalid:,} invalid requests in the last second ({min(invalid, INVALID_REQUESTS_SHOWN)} shown)")
    if skipped:
        parts.append(f"{skipped:,} other log lines held back to stay under Railway's 500 lines/s")
    logging.getLogger(__name__).warning(
        "; ".join(parts),
        extra={"summary": True, "invalid_requests": invalid, "lines_held_back": skipped},
    )


def logging_config(level: str) -> dict:
    """A dictConfig for the root, gunicorn's and the app's loggers."""
    stdout = {"handlers": ["stdout"], "level": level.upper(), "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}, "line_budget": {"()": LineBudget}},
        "formatters": {
            "json": {
                "()": RailwayFormatter,
                "fmt": "%(message)s %(name)s %(process)d",
                "rename_fields": {"name": "logger", "process": "pid"},
            }
        },
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": "json",
                "filters": ["request_id", "line_budget"],
            }
        },
        "root": {"handlers": ["stdout"], "level": level.upper()},
        "loggers": {"gunicorn.error": stdout},
    }


def configure_logging(level: str) -> None:
    """Send every log line to stdout as JSON."""
    logging.config.dictConfig(logging_config(level))
    logging.captureWarnings(True)
