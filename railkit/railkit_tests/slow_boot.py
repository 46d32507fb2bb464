"""Run gunicorn with workers that take long to set their signal handlers, as on a loaded machine.

    python -m railkit_tests.slow_boot MARKER_FILE main:app

Between its fork and setting its own signal handlers, a worker still has the
master's: a SIGTERM that comes then only queues a signal the worker never
reads. On a loaded machine (or while gevent patches itself) that window is
long. Here every worker after the first stays in it until MARKER_FILE exists,
so a test can send SIGTERM exactly then. Nothing in the project is patched.
"""

import sys
import time
from pathlib import Path

from gunicorn.app.wsgiapp import run
from gunicorn.workers.base import Worker

# Past this, the worker goes on anyway (a test that failed before making the marker).
MAX_WAIT_SECONDS = 30


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise SystemExit(__doc__)
    marker, app = Path(argv[0]), argv[1]
    set_handlers = Worker.init_signals

    def set_handlers_late(worker):
        deadline = time.monotonic() + MAX_WAIT_SECONDS
        # The first worker boots at once, so the cluster answers /health.
        while worker.age > 1 and not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        set_handlers(worker)

    Worker.init_signals = set_handlers_late
    sys.argv = ["gunicorn", app]
    run(prog="gunicorn")


if __name__ == "__main__":
    main(sys.argv[1:])
