"""What a failing process leaves in the log: stacks of a stuck worker, uncaught exceptions.

A stuck worker's stacks are logged one line per thread (and per greenlet
under gevent), each cut to its innermost frames, and only so many of them:
a single line of hundreds of kilobytes is dropped or split by log pipelines.
"""

import gc
import logging
import sys
import threading
import traceback

log = logging.getLogger(__name__)

# Innermost frames kept per stack: where it is stuck, not how it got there.
MAX_FRAMES = 30
# Characters per stack line (the innermost part is kept).
MAX_STACK_CHARS = 6000
# Stack lines per abort; a gevent worker can hold a thousand idle greenlets.
MAX_STACKS = 40


def current_stacks() -> dict[str, str]:
    """The stack of every thread, and of every greenlet under gevent, innermost frames only."""
    frames = sys._current_frames()
    stacks = {thread.name: _format(frames[thread.ident]) for thread in threading.enumerate() if thread.ident in frames}
    if "greenlet" in sys.modules:
        from greenlet import greenlet

        greenlets = (obj for obj in gc.get_objects() if isinstance(obj, greenlet))
        for number, green in enumerate(greenlets):
            if green.gr_frame is not None:
                stacks[f"greenlet-{number}"] = _format(green.gr_frame)
    return stacks


def _format(frame) -> str:
    text = "".join(traceback.format_stack(frame, limit=MAX_FRAMES))
    return text if len(text) <= MAX_STACK_CHARS else "..." + text[-MAX_STACK_CHARS:]


def log_stacks(context: str, extra: dict) -> None:
    """One line per stack (at most MAX_STACKS), each tagged with `extra`."""
    stacks = current_stacks()
    shown = sorted(stacks.items(), key=_interesting_first)[:MAX_STACKS]
    for number, (name, stack) in enumerate(shown, 1):
        log.error(
            "%s: stack %s of %s (%s)",
            context,
            number,
            len(stacks),
            name,
            extra={**extra, "stack_of": name, "stack": stack},
        )
    if len(stacks) > len(shown):
        log.error("%s: %s more stacks not logged", context, len(stacks) - len(shown), extra=extra)


def _interesting_first(item: tuple[str, str]) -> tuple[bool, str]:
    # Idle threads and greenlets wait in the server's own code; a stuck request is in the app's.
    name, stack = item
    idle = "gunicorn/workers" in stack.rsplit('File "', 1)[-1] or "gevent/hub" in stack
    return idle, name


def install_exception_logging() -> None:
    """Uncaught exceptions, in any thread, become one JSON log line with the traceback."""

    def log_uncaught(kind, value, tb):
        log.critical("Uncaught %s: %s", kind.__name__, value, exc_info=(kind, value, tb))

    sys.excepthook = log_uncaught
    threading.excepthook = lambda args: log_uncaught(args.exc_type, args.exc_value, args.exc_traceback)
