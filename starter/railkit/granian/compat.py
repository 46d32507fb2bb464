"""Every touch of granian's internals, and the start-up check that they are all still there.

granian's process manager has no hook for a worker's start or death, and on
Linux each worker binds a listening socket of its own (SO_REUSEPORT) whose
queued connections are reset when that worker stops. The platform keeps
granian's workers (their HTTP core and WSGI bridge) but supervises them itself,
on one listening socket they all share: it subclasses granian's server and
calls the few private methods listed in INTERNALS. Private methods may change
in any release, so the master checks them before anything starts and refuses
to start, with one JSON line, when one is missing or changed; the project
pins granian below its next minor (requirements.in).
"""

import inspect
import logging
import socket
import sys
from dataclasses import dataclass

import granian
from granian import _granian, _signals
from granian.server import common, mp

from ..settings import EXIT_BAD_CONFIG

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Internal:
    """One granian internal the platform relies on, and how to tell it is still the same."""

    name: str
    owner: object
    attribute: str
    # For a method: its parameters, in order. For code: names it must still use.
    parameters: tuple[str, ...] | None = None
    uses: tuple[str, ...] = ()

    def problem(self) -> str | None:
        """What is wrong with it in this granian, or None."""
        target = getattr(self.owner, self.attribute, None)
        if target is None:
            return f"{self.name} is missing"
        if self.parameters is not None:
            found = tuple(inspect.signature(target).parameters)
            if found[: len(self.parameters)] != self.parameters:
                return f"{self.name} takes ({', '.join(found)}), expected ({', '.join(self.parameters)})"
        code = getattr(inspect.unwrap(target), "__code__", None)
        absent = [name for name in self.uses if code is None or name not in code.co_names]
        if absent:
            return f"{self.name} no longer uses {', '.join(absent)}"
        return None


INTERNALS = (
    # serve() checks its options, then hands over to _serve: the platform's supervisor runs there.
    Internal("AbstractServer.serve", common.AbstractServer, "serve", uses=("_serve",)),
    Internal("AbstractServer._serve", common.AbstractServer, "_serve", ("self", "spawn_target", "target_loader")),
    # One worker process, built with every option the server was given, started by start().
    Internal("MPServer._spawn_worker", mp.MPServer, "_spawn_worker", ("self", "idx", "target", "callback_loader")),
    # A WSGI worker's entry point; it sets its stop handlers with set_sync_signals, which the platform replaces.
    Internal("MPServer._spawn_wsgi_worker", mp.MPServer, "_spawn_wsgi_worker", uses=("set_sync_signals",)),
    Internal("granian._signals.set_sync_signals", _signals, "set_sync_signals", ()),
    # start() also starts a thread per worker that only waits for it (the supervisor reaps instead).
    Internal("AbstractWorker.start", common.AbstractWorker, "start", ("self",), uses=("_watch",)),
    Internal("AbstractWorker._watch", common.AbstractWorker, "_watch", ("self",)),
    Internal("WorkerProcess.terminate", mp.WorkerProcess, "terminate", ("self",)),
    Internal("WorkerProcess.kill", mp.WorkerProcess, "kill", ("self",)),
    # The workers serve the listener the master shares, wrapped as granian wraps its own.
    Internal("MPServer._init_shared_socket", mp.MPServer, "_init_shared_socket", ("self",)),
)


def missing_internals() -> list[str]:
    """What is missing or changed in this granian: the internals, and the shared socket's holder."""
    found = [problem for internal in INTERNALS if (problem := internal.problem())]
    with socket.socket() as probe:
        try:
            _granian.SocketHolder(probe.fileno(), False, 1)
        except (AttributeError, TypeError) as error:
            found.append(f"SocketHolder(fd, uds, backlog) fails: {error}")
    if not getattr(_granian, "BUILD_GIL", False):
        found.append("this granian is a free-threaded build (its thread-based server is not supported)")
    return found


def refuse_unless_compatible() -> None:
    """Stop the start with one JSON line when this granian lacks an internal the platform uses."""
    found = missing_internals()
    if not found:
        return
    log.error(
        "Refusing to start: granian %s changed what the platform relies on (%s); install the granian version "
        "requirements.txt pins",
        granian.__version__,
        "; ".join(found),
        extra={"granian": granian.__version__, "changed": found},
    )
    sys.exit(EXIT_BAD_CONFIG)


def share_listener(server, listener: socket.socket, backlog: int) -> None:
    """Make every worker serve `listener`, as granian does off Linux, instead of binding a socket each."""
    server._ssp = None
    server._shd = _granian.SocketHolder(listener.fileno(), False, backlog)
    server._sfd = listener.fileno()
    server._sso = listener


def replace_worker_stop_handlers(set_handlers) -> None:
    """Have each WSGI worker set its stop handlers with `set_handlers()` (returning granian's WorkerSignal)."""
    _signals.set_sync_signals = set_handlers


def new_stop_event():
    """The event a granian worker stops on: its set() starts the worker's graceful stop."""
    return _granian.WorkerSignal()


def wsgi_worker_target():
    """granian's own entry point of a WSGI worker process."""
    return mp.MPServer._spawn_wsgi_worker


def start_worker(server, index: int, target, loader):
    """Fork one worker serving the app `loader` returns (in the worker); granian's own watcher thread stays off."""
    worker = server._spawn_worker(idx=index, target=target, callback_loader=loader)
    worker._watch = lambda: None
    worker.start()
    return worker


def process(worker):
    """The multiprocessing.Process behind granian's worker."""
    return worker.inner
