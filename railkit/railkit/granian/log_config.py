"""granian's logging as the platform's: JSON lines on stdout, under the same per-worker line budget.

granian configures logging from the dict it is given, in the master and again
in each worker it forks (granian.log.configure_logging). The platform's dict
(railkit.logs) routes granian's own logger there too. Two things differ from
gunicorn, where logging is set up once, in the master, before any fork:
the line budget must know the master by the pid that imported this module (a
worker's own dictConfig would take the worker for the master), and the
lifecycle lines of a granian cluster come from this package and from granian.
"""

import logging
import logging.config
import os

from .. import logs

# Set at import, in the master, before any worker is forked; every worker inherits it.
MASTER_PID = os.getpid()
# granian's logger, from Rust and Python alike.
GRANIAN_LOGGER = "_granian"
# This package's loggers: worker starts, deaths, stacks. Never budgeted, like railkit.cluster's.
LIFECYCLE_PREFIX = "railkit.granian"
# granian's advice on sizing, which reads the host's cores: the platform sizes workers and threads from
# the container and the plan (cluster/sizing.py), and its start-up story says why.
SIZING_ADVICE = ("Configured number of workers appears", "Configuration allows spawning up to")


class ClusterLineBudget(logs.LineBudget):
    """The platform's line budget, in a cluster whose workers configure logging themselves."""

    def __init__(self):
        super().__init__()
        self.master_pid = MASTER_PID

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith(LIFECYCLE_PREFIX) or record.name == GRANIAN_LOGGER:
            return not str(record.msg).startswith(SIZING_ADVICE)
        return super().filter(record)


def logging_config(level: str) -> dict:
    """The platform's dictConfig, with granian's logger on the same JSON handler."""
    config = logs.logging_config(level)
    config["filters"]["line_budget"] = {"()": ClusterLineBudget}
    config["loggers"][GRANIAN_LOGGER] = {"handlers": ["stdout"], "level": level.upper(), "propagate": False}
    return config


def configure(level: str) -> None:
    logging.config.dictConfig(logging_config(level))
    logging.captureWarnings(True)
