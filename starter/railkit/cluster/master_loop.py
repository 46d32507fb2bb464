"""What the master does on each pass of gunicorn's loop: deadlines, never sleeps.

gunicorn's master loop wakes at least once a second (sooner on a signal)
and, while it runs, reaps dead workers and replaces them. Anything that
waits inside a hook stops all of that. So crash back-off, the lame-duck
phase and the drain are deadlines: the loop checks them on each pass, and
wakes early enough to meet the next one. Folding a dead worker's metrics,
when a scrape holds their folder, is retried on the next pass the same way.

Stopping, on SIGTERM:
1. lame duck (SHUTDOWN_DELAY s): keep accepting and serving, but answer every
   request with `Connection: close` and /health/ready with 503, so proxies
   move their traffic to the new deployment;
2. drain: new connection attempts are dropped (drain.py), and the workers
   accept every connection already queued;
3. gunicorn's graceful stop: the workers finish what they hold, in the rest
   of GRACEFUL_TIMEOUT.
Ctrl-C (SIGINT) or a second SIGTERM skips the lame-duck phase.
While another master shares the sockets (gunicorn's binary upgrade, SIGUSR2)
there is no drain: the other master goes on accepting.

A stop signal sent to the whole process group (docker stop, a terminal's
Ctrl-C) reaches the workers too, and each idle one exits at once. While the
master stops, such a worker is not replaced, nor, after one, any other:
replacements would only be told to stop again. (A worker that dies
otherwise during the drain, before any left, is replaced: the queued
connections need it.) Once no worker is left, the master stops at once:
nobody would serve the rest of the lame duck or the drain.
"""

import logging
import math
import time

from . import drain, metrics
from . import gunicorn_compat as compat

log = logging.getLogger(__name__)

# How often the loop looks at the accept queue while the workers empty it.
DRAIN_POLL_SECONDS = 0.02
# gunicorn's loop never sleeps longer than this between passes.
MAX_WAIT_SECONDS = 1.0
# Nor shorter: a deadline just past is met on the next pass, without spinning.
MIN_WAIT_SECONDS = 0.005


class MasterLoop:
    """The master's deadlines: crash back-off, lame duck, drain; and its per-pass checks."""

    def __init__(self, hooks):
        # The hooks of the current config (a SIGHUP reload replaces them).
        self.hooks = hooks
        self.phase = "serving"
        self.stop_started = 0.0
        self.lame_duck_until = 0.0
        self.drain_until = 0.0
        self.draining: list = []
        self.queued_at_drain = 0
        # Workers that stopped on a stop signal of their own while the master was stopping.
        self.left_early = 0

    # -- each pass ------------------------------------------------------------

    def check_heartbeats(self, server, check) -> None:
        """gunicorn's heartbeat check (`check`), naming the request of each worker it aborts."""
        self.hooks.watchdog.name_heartbeat_timeouts(compat.workers(server), check)

    def tick(self, server) -> None:
        """Run the watchdog, fold dead workers' metrics a scrape held back, move the shutdown along when due."""
        hooks = self.hooks
        hooks.watchdog.check(compat.workers(server), hooks.settings.request_timeout)
        metrics.fold_dead_workers(alive=compat.workers(server))
        now = time.monotonic()
        if self.left_early and self.phase in ("lame duck", "draining") and not compat.workers(server):
            self._stop_now(server)
        elif self.phase == "lame duck" and now >= self.lame_duck_until:
            self._start_drain(server)
        elif self.phase == "draining" and (now >= self.drain_until or not drain.backlog(self.draining)):
            self._finish_drain(server)

    @property
    def stopping(self) -> bool:
        """True from the stop signal on: lame duck, drain, gunicorn's graceful stop."""
        return self.phase != "serving"

    def may_spawn(self) -> bool:
        """False while crash back-off holds new workers back, or once workers left on the stop signal."""
        return not self.left_early and self.hooks.crashes.seconds_until_spawn() <= 0

    def worker_left_early(self) -> None:
        """A worker stopped on the stop signal before the master told it to: replace none from now on."""
        self.left_early += 1

    def seconds_to_next_deadline(self) -> float:
        """How long the loop may wait before something is due."""
        now = time.monotonic()
        due = [MAX_WAIT_SECONDS]
        backoff = self.hooks.crashes.seconds_until_spawn()
        if backoff > 0:
            due.append(backoff)
        if self.phase == "lame duck":
            due.append(self.lame_duck_until - now)
        elif self.phase == "draining":
            due.append(DRAIN_POLL_SECONDS)
        return max(MIN_WAIT_SECONDS, min(due))

    # -- stopping -------------------------------------------------------------

    def handle_stop(self, server, skip_delay: bool) -> None:
        """SIGTERM or SIGINT: start the lame-duck phase, or skip it when asked twice or by Ctrl-C."""
        if self.phase == "serving":
            self.stop_started = time.monotonic()
            self.hooks.board.set_stopping(time.time())
            delay = self.hooks.settings.shutdown_delay
            if delay and not skip_delay:
                self.phase = "lame duck"
                self.lame_duck_until = self.stop_started + delay
                log.info(
                    "Stopping: serving %ss more with Connection: close and /health/ready failing, "
                    "so proxies move away (SHUTDOWN_DELAY)",
                    delay,
                    extra={"phase": "lame duck", "shutdown_delay_s": delay},
                )
                return
            self._start_drain(server)
        elif self.phase == "lame duck":
            log.info("Stopping now: a second signal skips the rest of SHUTDOWN_DELAY")
            self._start_drain(server)

    def _start_drain(self, server) -> None:
        """Drop new connection attempts; the workers keep accepting the queued ones."""
        if compat.shares_listeners(server):
            # A filter on the sockets would make them drop the other master's connections too, for good.
            log.info("Stopping without the drain: another master (SIGUSR2's) serves the same sockets")
            self._finish_drain(server)
            return
        self.phase = "draining"
        self.draining = drain.refuse_new_connections(compat.listeners(server))
        self.queued_at_drain = drain.backlog(self.draining)
        self.drain_until = time.monotonic() + self.hooks.settings.graceful_timeout
        if self.draining or not compat.listeners(server):
            return
        log.warning("New connections cannot be refused on this platform: stopping without the drain")
        self._finish_drain(server)

    def _stop_now(self, server) -> None:
        """Every worker stopped on the stop signal: nothing is in flight, and nobody would serve what comes."""
        log.info(
            "Stopping now: every worker stopped on the stop signal (sent to the whole process group)",
            extra={"workers_left_early": self.left_early},
        )
        self.phase = "stopping"
        compat.stop_gracefully(server, 1)

    def _finish_drain(self, server) -> None:
        """Hand over to gunicorn's graceful stop with what is left of GRACEFUL_TIMEOUT."""
        graceful_timeout = self.hooks.settings.graceful_timeout
        left_over = drain.backlog(self.draining)
        if left_over:
            log.warning("%s queued connections were not accepted before the graceful timeout", left_over)
        left = max(1, math.ceil(self.drain_until - time.monotonic()))
        self.phase = "stopping"
        if self.draining:
            log.info(
                "Stopping: new connections refused, %s queued ones handed to workers; %ss left for requests in flight",
                self.queued_at_drain,
                left,
                extra={"queued": self.queued_at_drain, "graceful_timeout_s": graceful_timeout},
            )
        else:
            log.info("Stopping: %ss left for requests in flight", left, extra={"graceful_timeout_s": graceful_timeout})
        compat.stop_gracefully(server, left)

    def before_workers_stop(self) -> None:
        """Note on the board that the workers are told to stop: one still booting misses the signal, and reads this."""
        self.hooks.board.set_workers_stopped(time.time())
