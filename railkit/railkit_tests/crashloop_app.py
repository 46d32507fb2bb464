"""An app whose every worker dies by a signal (SIGSEGV) as soon as it is forked: a crash loop.

A death by signal is what gunicorn's reaper logs at warning level, so a guard
that read the status from the log would miss it at LOG_LEVEL=error.
"""

import os
import resource
import signal

from .fixture_app import create_app

app = create_app()


def _crash():
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file in the project folder
    os.kill(os.getpid(), signal.SIGSEGV)


os.register_at_fork(after_in_child=_crash)
