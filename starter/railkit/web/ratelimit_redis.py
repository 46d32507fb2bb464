"""The rate limit's shared count in Redis: one round trip a count, a few connections a worker, outages told from errors.

Redis is declared down only on evidence a busy worker cannot fake: a refused or
broken connection, or no answer once the deadline has passed by the kernel's
clock. A gevent worker's loop can come back to a request long after Redis
answered, so a wait that timed out is checked again without waiting, and a
connect that timed out is checked by a blocking probe. Anything else (a wrong
password, a protocol error, a bug) is an error: logged with its traceback
once, and readiness fails. Either way the caller counts in the worker's memory
until a trial request finds Redis answering again.
"""

import hashlib
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import redis

log = logging.getLogger(__name__)

# Connections one worker opens to Redis at most; requests beyond them wait their turn. Enterprise's
# 15 gthread workers x 50 replicas hold 3,000, twice that while a deploy overlaps: inside maxclients (10,000).
REDIS_CONNECTIONS_PER_WORKER = 4
# How long Redis may take to answer, by the kernel's clock.
REDIS_ANSWER_SECONDS = 0.5
# Connect and handshake: generous, since a busy event loop stretches them; a timeout is then probed.
REDIS_CONNECT_SECONDS = 2.0
# A request's wait for one of its worker's connections. Past it the worker is overloaded, not Redis down.
REDIS_WAIT_SECONDS = 5.0
# A Redis that is down is tried again after this long, doubling up to the cap.
REDIS_RETRY_SECONDS = 1.0
REDIS_RETRY_MAX_SECONDS = 30.0
# One round trip: count, start the window on its first count, and say when it ends (ms).
COUNT_SCRIPT = """
local count = redis.call("INCRBY", KEYS[1], ARGV[2])
local ttl = redis.call("PTTL", KEYS[1])
if ttl < 0 then
  redis.call("PEXPIRE", KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""
COUNT_SHA = hashlib.sha1(COUNT_SCRIPT.encode()).hexdigest()
# limits' Redis storage prefix: replicas of railkit 1.x share these counts during a deploy's overlap.
KEY_PREFIX = "LIMITS:"
# The default Redis port, when REDIS_URL names none.
REDIS_PORT = 6379


class RedisUnavailable(Exception):
    """Redis is down or erring: count in the worker's memory."""


class RedisBusy(Exception):
    """Every connection of this worker stayed in use past REDIS_WAIT_SECONDS: the worker is overloaded."""


class RedisSilent(redis.exceptions.TimeoutError):
    """No answer by the deadline, by the kernel's clock."""


def is_outage(error: BaseException) -> bool:
    """Redis down or out of reach (refused, reset, silent), as opposed to an error of configuration or code."""
    if isinstance(error, (redis.exceptions.AuthenticationError, redis.exceptions.AuthorizationError)):
        return False
    return isinstance(error, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError))


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def blocking_socket_class() -> type[socket.socket]:
    """The standard library's socket, even where gevent patched it: its timeouts are the kernel's."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("socket"):
        return monkey.get_original("socket", "socket")
    return socket.socket


def answers_within(url: str, seconds: float) -> bool:
    """Whether anything answers a PING at `url` within `seconds` (each step), in a blocking socket no loop delays."""
    parts = urlsplit(url)
    try:
        if parts.scheme == "unix":
            targets = [(socket.AF_UNIX, socket.SOCK_STREAM, 0, "", parts.path)]
        else:
            targets = socket.getaddrinfo(parts.hostname, parts.port or REDIS_PORT, type=socket.SOCK_STREAM)
    except OSError:
        return False
    probe_class = blocking_socket_class()
    for family, kind, proto, _, address in targets:
        try:
            with probe_class(family, kind, proto) as probe:
                probe.settimeout(seconds)
                probe.connect(address)
                probe.sendall(b"PING\r\n")
                # Any answer counts, even a refusal or a close (a TLS port, maxclients): Redis is there.
                probe.recv(64)
                return True
        except OSError:
            continue
    return False


class Session:
    """Commands on one connection, each answered within REDIS_ANSWER_SECONDS or RedisSilent."""

    def __init__(self, connection: redis.Connection):
        self.connection = connection

    def count(self, key: str, expiry: float, amount: int = 1) -> tuple[int, float]:
        """Add `amount` to the key's count in its window: (count, when the window ends, epoch seconds)."""
        arguments = (1, KEY_PREFIX + key, int(expiry * 1000), amount)
        try:
            count, ttl_ms = self.call("EVALSHA", COUNT_SHA, *arguments)
        except redis.exceptions.NoScriptError:  # a restarted Redis forgot the script
            count, ttl_ms = self.call("EVAL", COUNT_SCRIPT, *arguments)
        return int(count), time.time() + int(ttl_ms) / 1000

    def ping(self) -> None:
        self.call("PING")

    def call(self, *command):
        connection = self.connection
        connection.send_command(*command)
        # A wait that timed out may only mean the event loop came back late: look again without waiting.
        if not connection.can_read(timeout=REDIS_ANSWER_SECONDS) and not connection.can_read(timeout=0):
            raise RedisSilent(f"no answer within {REDIS_ANSWER_SECONDS}s")
        return connection.read_response()


class RedisCounter:
    """Redis for one worker: at most REDIS_CONNECTIONS_PER_WORKER connections, and whether to use it right now."""

    def __init__(self, url: str):
        self.url = url
        self.pool = redis.ConnectionPool.from_url(
            url,
            max_connections=REDIS_CONNECTIONS_PER_WORKER,
            socket_connect_timeout=REDIS_CONNECT_SECONDS,
            socket_timeout=REDIS_CONNECT_SECONDS,
            # RESP2 and no CLIENT SETINFO: a new connection costs no round trip (one, AUTH, with a password).
            protocol=2,
            driver_info=None,
        )
        # Requests wait here for one of the pool's connections: past its cap the pool raises instead.
        self.slots = threading.BoundedSemaphore(REDIS_CONNECTIONS_PER_WORKER)
        # Redis's state, changed under the lock. Each outage (and each failed trial) is one generation:
        # requests that fail together, having started in the same one, back off once.
        self.lock = threading.Lock()
        self.generation = 0
        self.down = False
        self.down_until = 0.0
        self.retry = REDIS_RETRY_SECONDS
        self.trial = False
        # What went wrong last, and whether it was an error (not an outage), until Redis counts again.
        self.failure: str | None = None
        self.failure_is_error = False
        self.logged_errors: set[str] = set()

    def run(self, work: Callable[[Session], object]):
        """work(session) on one of this worker's connections; RedisUnavailable while down, RedisBusy when overloaded."""
        generation, trial = self._admit()
        try:
            result = self._with_session(work, even_if_down=trial)
        except (RedisBusy, RedisUnavailable):
            raise
        except Exception as error:
            self._failed(generation, error)
            raise RedisUnavailable from error
        else:
            if self.down:
                self._answered(generation)
            return result
        finally:
            if trial:
                with self.lock:
                    self.trial = False

    def check(self) -> dict:
        """Readiness, in health+json's check shape: pass, warn (counting in memory still) or fail."""
        started = time.perf_counter()
        status, output = "pass", None
        try:
            self._with_session(Session.ping, even_if_down=True)
        except RedisBusy:
            status, output = "warn", f"all {REDIS_CONNECTIONS_PER_WORKER} connections of this worker are busy"
        except Exception as error:
            status = "fail"
            if is_outage(error):
                output = f"Redis does not answer ({describe(error)})"
            else:
                output = f"Redis refuses the rate limit's commands ({describe(error)})"
                self._log_error_once(error)
        else:
            failure = self.failure
            if self.down and failure is not None:
                status = "fail" if self.failure_is_error else "warn"
                output = f"this worker counts in its memory after: {failure}"
        entry = {
            "componentType": "datastore",
            "observedValue": round((time.perf_counter() - started) * 1000, 1),
            "observedUnit": "ms",
            "status": status,
        }
        if output:
            entry["output"] = output
        return entry

    def _admit(self) -> tuple[int, bool]:
        """(generation, whether this is the trial): one request at a time tries a Redis that was down."""
        if not self.down:
            return self.generation, False
        with self.lock:
            if not self.down:
                return self.generation, False
            if self.trial or time.monotonic() < self.down_until:
                raise RedisUnavailable
            self.trial = True
            return self.generation, True

    def _with_session(self, work, even_if_down: bool):
        if not self.slots.acquire(timeout=REDIS_WAIT_SECONDS):
            raise RedisBusy
        try:
            # Redis went down while this request waited for a connection: don't wait on it again.
            if self.down and not even_if_down:
                raise RedisUnavailable
            connection = self._connection()
            try:
                return work(Session(connection))
            except BaseException:
                connection.disconnect()  # its state is unknown: a late answer must not reach the next command
                raise
            finally:
                self.pool.release(connection)
        finally:
            self.slots.release()

    def _connection(self) -> redis.Connection:
        try:
            return self.pool.get_connection()
        except redis.exceptions.TimeoutError:
            # A busy loop stretches a connect past its timeout: the kernel's clock decides whether Redis is
            # there. Once an outage is declared, connects that time out need no probe (it blocks a gevent worker).
            if self.down or not answers_within(self.url, REDIS_ANSWER_SECONDS):
                raise
        try:
            return self.pool.get_connection()
        except redis.exceptions.TimeoutError:
            raise RedisBusy from None  # Redis answers, this worker cannot keep up

    def _failed(self, generation: int, error: Exception) -> None:
        """Count in memory for a while: once per outage the delay doubles and a line is logged."""
        outage = is_outage(error)
        with self.lock:
            if generation != self.generation:
                return  # a request that started before this outage was declared
            self.generation += 1
            self.down = True
            self.failure, self.failure_is_error = describe(error), not outage
            retry = self.retry
            self.down_until = time.monotonic() + retry
            self.retry = min(retry * 2, REDIS_RETRY_MAX_SECONDS)
        if outage:
            log.warning(
                "Rate limit: Redis does not answer (%s); counting in this worker's memory for %.0fs",
                describe(error),
                retry,
            )
        else:
            self._log_error_once(error, retry)

    def _log_error_once(self, error: BaseException, retry: float | None = None) -> None:
        """The traceback of each distinct error once, until Redis counts again: it will not go away by itself."""
        text = describe(error)
        with self.lock:
            if text in self.logged_errors:
                return
            self.logged_errors.add(text)
        counting = f"; counting in this worker's memory for {retry:.0f}s" if retry is not None else ""
        log.error(
            "Rate limit: Redis refuses the rate limit's commands (%s)%s; readiness fails until it counts again",
            text,
            counting,
            exc_info=error,
        )

    def _answered(self, generation: int) -> None:
        with self.lock:
            # A request that began before the outage was declared says nothing about Redis now.
            if generation != self.generation or not self.down:
                return
            self.down = False
            self.retry = REDIS_RETRY_SECONDS
            self.failure, self.failure_is_error = None, False
            self.logged_errors.clear()
        log.warning("Rate limit: Redis answers again; counting there")
