"""Every touch of gunicorn's internals, and the start-up check that they are all still there.

gunicorn has no periodic master hook, no hook that sees a worker's exit
status, and no hook between a worker's app returning and its body being
sent. The cluster gets those by wrapping a few internals, listed in
INTERNALS. gunicorn has changed such internals before (24.0 replaced the
signal queue), and a wrapper around something renamed would silently do
nothing. So the master checks each one's shape before anything starts, and
refuses to start, with one JSON line, when one is missing.
(errors.py swaps gunicorn.util.write_error, workers/writing.py its two
writers of answers, workers/peers.py its check of a peer against the allow
lists, and workers/ subclasses gunicorn's workers and request readers;
their internals are checked here too.)
"""

import importlib.util
import inspect
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

import gunicorn
import gunicorn.http
from gunicorn import arbiter, sock, util
from gunicorn.http import body, message, parser, unreader, wsgi
from gunicorn.http2 import negotiation
from gunicorn.workers import base, gthread, sync

log = logging.getLogger(__name__)

# sysexits.h EX_CONFIG, as for a bad variable: the start is refused.
EXIT_INCOMPATIBLE = 78


@dataclass(frozen=True)
class Internal:
    """One gunicorn internal the cluster relies on, and how to tell it is still the same."""

    name: str
    owner: object
    attribute: str
    # For a method: its parameters, in order. For code: names it must still use.
    parameters: tuple[str, ...] | None = None
    uses: tuple[str, ...] = ()
    # For data: the type it must have.
    kind: type | None = None

    def problem(self) -> str | None:
        """What is wrong with it in this gunicorn, or None."""
        target = getattr(self.owner, self.attribute, None)
        if target is None:
            return f"{self.name} is missing"
        if self.kind is not None and not isinstance(target, self.kind):
            return f"{self.name} is a {type(target).__name__}, expected a {self.kind.__name__}"
        if self.parameters is not None:
            try:
                found = tuple(inspect.signature(target).parameters)
            except (TypeError, ValueError):
                return f"{self.name} is not a function"
            if not _same_call(inspect.signature(target), self.parameters):
                return f"{self.name} takes ({', '.join(found)}), expected ({', '.join(self.parameters)})"
        code = getattr(target, "__code__", None)
        absent = [name for name in self.uses if code is None or name not in code.co_names]
        if absent:
            return f"{self.name} no longer uses {', '.join(absent)}"
        return None


def _same_call(signature: inspect.Signature, expected: tuple[str, ...]) -> bool:
    """Whether a function still takes `expected`, in order: a new optional parameter after them is no change."""
    found = list(signature.parameters.values())
    if tuple(parameter.name for parameter in found[: len(expected)]) != expected:
        return False
    return all(parameter.default is not inspect.Parameter.empty for parameter in found[len(expected) :])


INTERNALS = (
    # The loop itself: it calls murder_workers every pass, and dispatches each signal to handle_<name>.
    Internal("Arbiter.run", arbiter.Arbiter, "run", ("self",), ("murder_workers", "SIG_NAMES")),
    # The master loop calls it every pass (at least once a second): the
    # watchdog and the shutdown deadlines ride along with it.
    Internal("Arbiter.murder_workers", arbiter.Arbiter, "murder_workers", ("self",)),
    # Spawns missing workers; held back during crash back-off.
    Internal("Arbiter.manage_workers", arbiter.Arbiter, "manage_workers", ("self",), ("spawn_workers",)),
    # The loop's wait; shortened so a deadline is met on time.
    Internal("Arbiter.wait_for_signals", arbiter.Arbiter, "wait_for_signals", ("self", "timeout")),
    # SIGUSR2 starts a master that shares the listeners (reexec_pid in the old, master_pid in the new): no drain then.
    # It runs `START_CTX[0] START_CTX["args"]`, the interpreter and sys.argv (cluster/__main__.py's REEXEC).
    Internal("Arbiter.reexec", arbiter.Arbiter, "reexec", ("self",), ("reexec_pid", "master_pid", "START_CTX")),
    # SIGTERM and SIGINT start the lame-duck phase and drain instead.
    Internal("Arbiter.handle_term", arbiter.Arbiter, "handle_term", ("self",)),
    Internal("Arbiter.handle_int", arbiter.Arbiter, "handle_int", ("self",)),
    # Every way the master stops its workers goes through it: the board notes it first.
    Internal("Arbiter.stop", arbiter.Arbiter, "stop", ("self", "graceful"), ("kill_workers",)),
    # The reaper learns each worker's exit status through gunicorn.arbiter's os.waitpid.
    Internal("Arbiter.reap_workers", arbiter.Arbiter, "reap_workers", ("self",), ("os", "waitpid", "child_exit")),
    Internal("gunicorn.arbiter.os", arbiter, "os", kind=type(os)),
    Internal("Arbiter.LISTENERS", arbiter.Arbiter, "LISTENERS", kind=list),
    Internal("Arbiter.WORKERS", arbiter.Arbiter, "WORKERS", kind=dict),
    Internal("BaseSocket.get_backlog", sock.BaseSocket, "get_backlog", ("self",)),
    # A worker: the aborted flag marks a timeout, wsgi is the app it calls, sockets are its listeners.
    Internal("Worker.__init__", base.Worker, "__init__", uses=("aborted", "tmp", "sockets")),
    # Its SIGTERM handler: a stopping worker lets go of its listeners at once (workers/listeners.py).
    Internal("Worker.handle_exit", base.Worker, "handle_exit", ("self", "sig", "frame"), ("alive",)),
    Internal("Worker.load_wsgi", base.Worker, "load_wsgi", ("self",), ("wsgi",)),
    # A request: must_close ends its connection after the answer.
    # It sets the limit of an unfinished head, then parses: workers/reading.py's header budget replaces the limit.
    Internal("Message.__init__", message.Message, "__init__", uses=("must_close", "max_buffer_headers", "parse")),
    Internal("Request.parse", message.Request, "parse", ("self", "unreader")),
    Internal(
        "Request._parse_python", message.Request, "_parse_python", ("self", "unreader", "buf"), ("max_buffer_headers",)
    ),
    Internal("Request.__init__", message.Request, "__init__", uses=("req_number",)),
    Internal("util.write_error", util, "write_error", ("sock", "status_int", "reason", "mesg")),
    # workers/writing.py: every answer written against a deadline, through the two writers responses call.
    Internal("util.write", util, "write", ("sock", "data", "chunked"), ("write_chunk",)),
    Internal("util.write_chunk", util, "write_chunk", ("sock", "data")),
    Internal("Response.send_headers", wsgi.Response, "send_headers", ("self",), ("util", "write")),
    Internal("Response._emit_body", wsgi.Response, "_emit_body", ("self", "data"), ("util", "write")),
    Internal("Response.close", wsgi.Response, "close", ("self",), ("util", "write_chunk")),
    # A file body: sent through the response's sock, which workers/writing.py swaps for one keeping the deadline.
    Internal("Response.sendfile", wsgi.Response, "sendfile", ("self", "respiter"), ("sock", "sendall", "sendfile")),
    # workers/reading.py: `100 Continue` sent on the app's first read, not by wsgi.create before the app runs;
    # and the decision to close after an answer, which Response.should_close asks the request for.
    Internal("Request._expected_100_continue", message.Request, "_expected_100_continue", kind=bool),
    Internal("wsgi.create", wsgi, "create", uses=("_expected_100_continue",)),
    Internal("Message.should_close", message.Message, "should_close", ("self",), ("must_close",)),
    Internal("Response.should_close", wsgi.Response, "should_close", ("self",), ("should_close",)),
    # workers/reading.py: requests read against deadlines (DeadlineParser and its readers).
    Internal(
        "gunicorn.http.get_parser", gunicorn.http, "get_parser", ("cfg", "source", "source_addr", "http2_connection")
    ),
    Internal("RequestParser.__init__", parser.RequestParser, "__init__", ("self", "cfg", "source", "source_addr")),
    Internal("RequestParser.mesg_class", parser.RequestParser, "mesg_class", kind=type),
    Internal("Request.set_body_reader", message.Request, "set_body_reader", ("self",)),
    Internal("Parser.finish_body", parser.Parser, "finish_body", ("self", "deadline", "max_bytes"), ("mesg",)),
    Internal("Body.__init__", body.Body, "__init__", uses=("failed",)),
    Internal("SocketUnreader.chunk", unreader.SocketUnreader, "chunk", ("self", "size_hint")),
    # What a request's parse took from the socket: the header budget counts it.
    Internal("Unreader.read", unreader.Unreader, "read", ("self", "size", "read_ahead")),
    Internal("Unreader.unread", unreader.Unreader, "unread", ("self", "data")),
    Internal("ChunkedReader.__init__", body.ChunkedReader, "__init__", ("self", "req", "unreader"), ("parser",)),
    Internal("ChunkedReader.parse_chunk_size", body.ChunkedReader, "parse_chunk_size", ("self", "unreader", "data")),
    Internal("LengthReader.__init__", body.LengthReader, "__init__", ("self", "unreader", "length"), ("length",)),
    Internal("EOFReader.__init__", body.EOFReader, "__init__", ("self", "unreader"), ("finished",)),
    # workers/answers.py: client errors answered as problems; each response's Date cached once a second.
    Internal("Worker.handle_error", base.Worker, "handle_error", ("self", "req", "client", "addr", "exc")),
    Internal("util.http_date", util, "http_date", ("timestamp",)),
    Internal("Response.default_headers", wsgi.Response, "default_headers", ("self",), ("http_date",)),
    # workers/peers.py: a peer's trust worked out once per address, an IPv4-mapped peer as its IPv4 address.
    Internal("message._ip_in_allow_list", message, "_ip_in_allow_list", ("ip_str", "allow_list", "networks")),
    Internal("negotiation._ip_in_allow_list", negotiation, "_ip_in_allow_list", ("ip_str", "allow_list", "networks")),
    Internal(
        "HeaderPolicy._peer_is_trusted_proxy",
        message.HeaderPolicy,
        "_peer_is_trusted_proxy",
        ("self",),
        ("_ip_in_allow_list", "forwarded_allow_networks"),
    ),
    # errors.py: problems written straight to the socket, and lingering closes.
    Internal("util.write_nonblock", util, "write_nonblock", ("sock", "data", "chunked")),
    Internal("util.close", util, "close", ("sock",)),
    # workers/gthread_worker.py: gthread's connections wait for their request head in the worker's event loop.
    Internal("negotiation.prior_knowledge_allowed", negotiation, "prior_knowledge_allowed", ("cfg", "peer_addr")),
    Internal("TConn.__init__", gthread.TConn, "__init__", uses=("data_ready", "parser")),
    # finish_request closes a connection with close(graceful=True) when it must go: _Conn lingers then.
    Internal("TConn.close", gthread.TConn, "close", ("self", "graceful")),
    Internal(
        "ThreadWorker.__init__",
        gthread.ThreadWorker,
        "__init__",
        uses=("poller", "keepalived_conns", "nr_conns", "worker_connections", "max_keepalived"),
    ),
    # The run loop accepts while nr_conns < worker_connections (a property of ours: 0 while accepts pause).
    # Once stopping, it leaves its loop and calls set_accept_enabled(False): the worker lets go of its listeners then.
    Internal(
        "ThreadWorker.run",
        gthread.ThreadWorker,
        "run",
        ("self",),
        ("nr_conns", "worker_connections", "alive", "set_accept_enabled"),
    ),
    Internal("ThreadWorker.set_accept_enabled", gthread.ThreadWorker, "set_accept_enabled", ("self", "enabled")),
    # Kept-alive connections idle oldest first, each until its `timeout` (the eviction reads it).
    Internal("TConn.set_timeout", gthread.TConn, "set_timeout", ("self",), ("timeout",)),
    Internal("ThreadWorker.accept", gthread.ThreadWorker, "accept", ("self", "listener")),
    Internal(
        "ThreadWorker.on_client_socket_readable",
        gthread.ThreadWorker,
        "on_client_socket_readable",
        ("self", "conn", "client"),
    ),
    Internal("ThreadWorker.enqueue_req", gthread.ThreadWorker, "enqueue_req", ("self", "conn")),
    Internal("ThreadWorker.finish_request", gthread.ThreadWorker, "finish_request", ("self", "conn", "fs"), ("close",)),
    Internal("ThreadWorker.murder_pending", gthread.ThreadWorker, "murder_pending", ("self",)),
    # handle() answers True for a kept-alive connection (its _keepalive_after): the thread may serve the next request.
    Internal(
        "ThreadWorker.handle",
        gthread.ThreadWorker,
        "handle",
        ("self", "conn"),
        ("data_ready", "parser", "_keepalive_after"),
    ),
    Internal("gthread.STOP_KEEPALIVE_LINGER", gthread, "STOP_KEEPALIVE_LINGER", kind=float),
    # workers/sync_worker.py: a sync worker lingers after an answer while the client still sends.
    Internal("Worker.init_process", base.Worker, "init_process", ("self",)),
    Internal(
        "SyncWorker.handle_request", sync.SyncWorker, "handle_request", ("self", "listener", "req", "client", "addr")
    ),
    # A stopping sync worker's listeners are /dev/null: accept() failing then means nothing to accept.
    Internal("SyncWorker.accept", sync.SyncWorker, "accept", ("self", "listener"), ("accept", "handle")),
)


def gevent_internals() -> tuple[Internal, ...]:
    """What workers/gevent_worker.py relies on; none where gevent is not installed."""
    if importlib.util.find_spec("gevent") is None:
        return ()
    from gevent import monkey
    from gunicorn.workers import ggevent

    return (
        # Each worker patches only os and signal (the master patched the rest), without announcing it.
        Internal("GeventWorker.init_process", ggevent.GeventWorker, "init_process", ("self",), ("patch", "reinit")),
        Internal("GeventWorker.patch", ggevent.GeventWorker, "patch", ("self",), ("patch_all", "sockets", "detach")),
        Internal(
            "monkey.patch_module",
            monkey,
            "patch_module",
            (
                "target_module",
                "source_module",
                "items",
                "_warnings",
                "_patch_kwargs",
                "_notify_will_subscribers",
                "_notify_did_subscribers",
                "_call_hooks",
            ),
        ),
        # Its pool's size is worker_connections, which the worker sizes from its open-files limit.
        Internal("GeventWorker.run", ggevent.GeventWorker, "run", ("self",), ("worker_connections",)),
        Internal("GeventWorker.handle", ggevent.GeventWorker, "handle", ("self", "listener", "client", "addr")),
        Internal(
            "GeventWorker.handle_request",
            ggevent.GeventWorker,
            "handle_request",
            ("self", "listener_name", "req", "sock", "addr"),
        ),
    )


def missing_internals(worker_class: str) -> list[str]:
    """Each wrapped internal that this gunicorn (or gevent) no longer has in the expected shape.

    gevent's are checked for gevent workers only: importing gevent where it is
    merely installed would cost every other master ~30 ms and its memory.
    """
    internals = (*INTERNALS, *(gevent_internals() if worker_class == "gevent" else ()))
    problems = [internal.problem() for internal in internals]
    if getattr(arbiter, "os", None) is not os:
        problems.append("gunicorn.arbiter.os is not the os module")
    return [problem for problem in problems if problem]


def refuse_unless_compatible(worker_class: str) -> None:
    """Stop the start with one JSON line when gunicorn's internals changed shape."""
    missing = missing_internals(worker_class)
    if not missing:
        return
    log.error(
        "Refusing to start: gunicorn %s changed internals this cluster wraps: %s",
        gunicorn.__version__,
        "; ".join(missing),
        extra={"gunicorn_version": gunicorn.__version__, "missing": missing},
    )
    sys.exit(EXIT_INCOMPATIBLE)


# -- the master -------------------------------------------------------------


def wrap_master_loop(server, loop) -> None:
    """Hand the master loop's steps to `loop` (a master_loop.MasterLoop)."""
    check_heartbeats = server.murder_workers
    manage_workers = server.manage_workers
    wait_for_signals = server.wait_for_signals
    stop_workers = server.stop

    def murder_workers():
        loop.check_heartbeats(server, check_heartbeats)
        loop.tick(server)

    def manage_unless_backing_off():
        if loop.may_spawn():
            manage_workers()

    def wait_until_next_deadline(timeout=1.0):
        return wait_for_signals(timeout=min(timeout, loop.seconds_to_next_deadline()))

    def stop(graceful=True):
        loop.before_workers_stop()
        stop_workers(graceful)

    server.murder_workers = murder_workers
    server.manage_workers = manage_unless_backing_off
    server.wait_for_signals = wait_until_next_deadline
    server.stop = stop
    server.handle_term = lambda: loop.handle_stop(server, skip_delay=False)
    server.handle_int = lambda: loop.handle_stop(server, skip_delay=True)


def stop_gracefully(server, graceful_timeout: float) -> None:
    """gunicorn's own graceful stop, given `graceful_timeout` seconds (raises StopIteration)."""
    server.cfg.set("graceful_timeout", graceful_timeout)
    arbiter.Arbiter.handle_term(server)


class _OsRecordingWaits:
    """gunicorn.arbiter's view of `os`, with waitpid noting each worker's exit status.

    child_exit receives the worker but not its status; the reaper collects the
    status with os.waitpid and only logs it (at levels LOG_LEVEL may hide).
    """

    def __init__(self, server, statuses: dict[int, int]):
        self._server = server
        self._statuses = statuses

    def __getattr__(self, name):
        return getattr(os, name)

    def waitpid(self, pid: int, options: int):
        reaped, status = os.waitpid(pid, options)
        if reaped in self._server.WORKERS:
            self._statuses[reaped] = status
        return reaped, status


def record_exit_statuses(server, statuses: dict[int, int]) -> None:
    """Fill `statuses` (pid -> waitpid status) as gunicorn reaps each worker."""
    arbiter.os = _OsRecordingWaits(server, statuses)


class DropReaperLines(logging.Filter):
    """Drops the reaper's own death lines: the cluster logs one richer line per death.

    (gunicorn calls every SIGKILL "Perhaps out of memory?", even the ones it
    sent.) Should the wording change, the lines only show up again.
    """

    REAPER_LINES = ("Worker (pid:%s) was sent %s!", "Worker (pid:%s) exited with code %s.")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.REAPER_LINES)


def drop_reaper_lines() -> None:
    logging.getLogger("gunicorn.error").addFilter(DropReaperLines())


def listeners(server) -> list:
    return server.LISTENERS


def shares_listeners(server) -> bool:
    """Whether another master serves the same sockets: the one SIGUSR2 started, or the one that started this one."""
    return bool(server.reexec_pid or server.master_pid)


def workers(server) -> dict:
    """pid -> worker, for the workers the master still counts."""
    return server.WORKERS


def mark_aborted(worker) -> None:
    """gunicorn reads this flag: the worker's death is reported as a timeout."""
    worker.aborted = True


def was_aborted(worker) -> bool:
    return worker.aborted


def bind_addresses(server) -> list:
    """The (host, port) pairs gunicorn is about to bind, and unix socket paths."""
    return server.cfg.address


def restore_os_in_worker() -> None:
    """A forked worker reaps nothing: it gets gunicorn's plain os module back."""
    arbiter.os = os


# -- a worker ---------------------------------------------------------------


def wrap_worker_app(worker, wrap: Callable) -> None:
    """Make the worker call wrap(app) instead of its WSGI app."""
    worker.wsgi = wrap(worker.wsgi)


def close_after_answer(req) -> None:
    """Answer this request with `Connection: close`, and end its connection."""
    req.must_close = True


def requests_on_connection(req) -> int:
    """How many requests this one's connection has carried, this one included."""
    return req.req_number


def extend_own_graceful_timeout(worker, seconds: float) -> None:
    """The worker's own deadline after SIGTERM, so the master's always comes first."""
    worker.cfg.set("graceful_timeout", worker.cfg.graceful_timeout + seconds)
