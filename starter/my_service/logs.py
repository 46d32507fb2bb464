"""JSON lines on stdout, the shape Railway's log viewer parses.

Railway reads `message` and `level` (debug, info, warn, error) from each line
and turns every other key into a filterable attribute. It shows anything on
stderr as an error, so every logger here, gunicorn's included, writes stdout.
"""

import logging
import logging.config
from contextvars import ContextVar

from gunicorn.glogging import Logger
from pythonjsonlogger.json import JsonFormatter

# Set by the app for the length of one request; read by every log line.
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

RAILWAY_LEVELS = {"DEBUG": "debug", "INFO": "info", "WARNING": "warn", "ERROR": "error", "CRITICAL": "error"}


class RailwayFormatter(JsonFormatter):
    """One JSON object per line with `message`, Railway's `level`, and the extras."""

    def add_fields(self, log_record, record, message_dict):
        super().add_fields(log_record, record, message_dict)
        log_record["level"] = RAILWAY_LEVELS.get(record.levelname, "info")


class RequestIdFilter(logging.Filter):
    """Stamps the current request's id on every line logged while serving it."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = request_id.get()
        if current is not None and not hasattr(record, "request_id"):
            record.request_id = current
        return True


def logging_config(level: str) -> dict:
    """A dictConfig for the root, gunicorn's and the app's loggers."""
    stdout = {"handlers": ["stdout"], "level": level.upper(), "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
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
                "filters": ["request_id"],
            }
        },
        "root": {"handlers": ["stdout"], "level": level.upper()},
        "loggers": {"gunicorn.error": stdout},
    }


def configure_logging(level: str) -> None:
    """Send every log line to stdout as JSON."""
    logging.config.dictConfig(logging_config(level))
    logging.captureWarnings(True)


class GunicornLogger(Logger):
    """gunicorn's logger, writing JSON to stdout like every other logger.

    gunicorn's own access log stays off: the app logs requests itself, with
    their request id and within Railway's line rate.
    """

    def setup(self, cfg):
        super().setup(cfg)
        configure_logging(cfg.loglevel)
