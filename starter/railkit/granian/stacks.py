"""A stuck worker's last words: every thread's stack, one JSON line each, when the master aborts it.

granian runs the app on threads it starts itself, which the threading module
does not list, so the stacks come from every frame the interpreter holds
(cluster/diagnostics.py lists threading's threads, gunicorn's all are).
"""

import logging
import sys
import threading
import traceback

from ..cluster.diagnostics import MAX_FRAMES, MAX_STACK_CHARS, MAX_STACKS

log = logging.getLogger(__name__)


def current_stacks() -> dict[str, str]:
    """The stack of every thread running Python code, innermost frames only, by thread name."""
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    # The thread asking is the app's only when it is the main one (the relay of signals asks too).
    asking = threading.get_ident() if threading.current_thread() is not threading.main_thread() else None
    stacks = {}
    for ident, frame in sys._current_frames().items():
        if ident == asking:
            continue
        text = "".join(traceback.format_stack(frame, limit=MAX_FRAMES))
        if len(text) > MAX_STACK_CHARS:
            text = "..." + text[-MAX_STACK_CHARS:]
        stacks[names.get(ident, f"thread-{ident}")] = text
    return stacks


def log_stacks(context: str, extra: dict) -> None:
    """One line per stack (at most MAX_STACKS), the app's threads first, each tagged with `extra`."""
    stacks = current_stacks()
    # The main thread waits in granian's worker loop; the app's threads are the others.
    main = threading.main_thread().name
    shown = sorted(stacks.items(), key=lambda item: (item[0] == main, item[0]))[:MAX_STACKS]
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
