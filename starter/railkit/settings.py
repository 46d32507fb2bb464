"""Settings read from the environment, checked before anything starts.

Every variable is parsed here, once, for both the cluster and the app, so a
nonsense value stops the start with one line that names it instead of failing
later inside gunicorn or a request.
"""

import ipaddress
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NoReturn
from urllib.parse import urlsplit

from limits import parse_many

from . import project
from .plans import DEFAULT_PLAN, PLANS, Plan

# Chosen when the project was generated; gunicorn's -k flag still overrides it.
WORKER_CLASS = project.WORKER_CLASS

# sysexits.h EX_CONFIG: the start was refused because of the configuration.
EXIT_BAD_CONFIG = 78

TRUE_WORDS = {"true", "1", "yes", "on"}
FALSE_WORDS = {"false", "0", "no", "off"}
ACCESS_LOG_MODES = ("problems", "all", "off")
LOG_LEVELS = ("debug", "info", "warning", "error")
REDIS_SCHEMES = ("redis", "rediss", "unix")
# Seconds the app may work on one request before its worker is replaced (REQUEST_TIMEOUT).
REQUEST_TIMEOUT = 30
# RATE_LIMIT values that turn limiting off.
RATE_LIMIT_OFF = {"off", "0", "none", "false"}
# gunicorn's own default for FORWARDED_ALLOW_IPS: only a proxy on this host is trusted.
GUNICORN_FORWARDED_ALLOW_IPS = "127.0.0.1,::1"
# Variables Railway sets in every deployment: their presence means Railway's edge is in front.
RAILWAY_MARKERS = ("RAILWAY_ENVIRONMENT_NAME", "RAILWAY_PROJECT_ID", "RAILWAY_SERVICE_ID")
# An IPv6 client is counted by this prefix: one subscriber is usually given a /56 (or a /64, or a /48),
# and express-rate-limit's ipv6Subnet defaults to 56.
RATE_LIMIT_IPV6_PREFIX = 56
IPV6_PREFIX_RANGE = (32, 128)
# The schemes sentry-sdk accepts in a DSN.
SENTRY_SCHEMES = ("http", "https")


class SettingError(ValueError):
    """A variable holds a value the service cannot start with."""

    def __init__(self, variable: str, value: str, problem: str, fix: str):
        super().__init__(f"{variable}={value!r} {problem}: {fix}")
        self.variable = variable
        self.value = value


@dataclass(frozen=True)
class Settings:
    """The service's configuration, valid by construction."""

    plan: Plan
    port: int
    clustering: bool
    # None when unset: the cluster sizes itself from the container.
    web_concurrency: int | None
    worker_max_memory_mb: int
    graceful_timeout: int
    # None when RATE_LIMIT=off.
    rate_limit: str | None
    redis_url: str | None
    access_log: str
    log_level: str
    # Lame-duck seconds after SIGTERM (0: off), and the app's time per request (0: no limit).
    shutdown_delay: int = 0
    request_timeout: int = 30
    # Peers whose X-Forwarded-* headers are believed: "*" or addresses and networks (gunicorn's meaning).
    forwarded_allow_ips: tuple[str, ...] = ("127.0.0.1", "::1")
    # On Railway with FORWARDED_ALLOW_IPS unset: the client is the edge's X-Real-IP, believed only with the
    # edge's marks (see _Reader.forwarded_allow_ips for the boundary); gunicorn still reads the scheme from "*".
    railway_edge: bool = False
    # Whether RATE_LIMIT was set (not the plan's default): in testing, only a set limit applies.
    rate_limit_set: bool = False
    # An IPv6 client's rate-limit key is its network of this prefix length.
    rate_limit_ipv6_prefix: int = RATE_LIMIT_IPV6_PREFIX
    # METRICS=off drops /metrics and its per-request counting.
    metrics: bool = True
    # When set, /metrics answers only `Authorization: Bearer <token>`, from anywhere.
    metrics_token: str | None = None
    # When set, unhandled exceptions go to Sentry (sentry-sdk is imported only then).
    sentry_dsn: str | None = None
    sentry_traces_sample_rate: float = 0.0
    worker_class: str = WORKER_CLASS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "Settings":
        """Parse the environment, raising SettingError for the first bad value."""
        reader = _Reader(environ)
        plan = reader.choice("RAILWAY_PLAN", DEFAULT_PLAN, tuple(PLANS))
        plan = PLANS[plan]
        clustering = reader.boolean("ENABLE_CLUSTERING")
        web_concurrency = reader.integer("WEB_CONCURRENCY", None, low=1, high=256)
        if clustering is False and web_concurrency and web_concurrency > 1:
            raise SettingError(
                "WEB_CONCURRENCY",
                str(web_concurrency),
                "asks for several workers while ENABLE_CLUSTERING=false",
                "unset one of the two",
            )
        if clustering is None:
            clustering = plan.clustering if web_concurrency is None else web_concurrency > 1
        forwarded_allow_ips = reader.forwarded_allow_ips("FORWARDED_ALLOW_IPS")
        return cls(
            plan=plan,
            port=reader.integer("PORT", 8000, low=1, high=65535),
            clustering=clustering,
            web_concurrency=web_concurrency,
            worker_max_memory_mb=reader.integer(
                "WORKER_MAX_MEMORY_MB", plan.worker_max_memory_mb, low=32, high=1_048_576
            ),
            graceful_timeout=reader.integer("GRACEFUL_TIMEOUT", plan.graceful_timeout, low=1, high=3600),
            rate_limit=reader.rate_limit("RATE_LIMIT", plan.rate_limit),
            redis_url=reader.redis_url("REDIS_URL"),
            access_log=reader.choice("ACCESS_LOG", "problems", ACCESS_LOG_MODES),
            log_level=reader.choice("LOG_LEVEL", "info", LOG_LEVELS),
            shutdown_delay=reader.integer("SHUTDOWN_DELAY", plan.shutdown_delay, low=0, high=300),
            request_timeout=reader.integer("REQUEST_TIMEOUT", REQUEST_TIMEOUT, low=0, high=3600),
            forwarded_allow_ips=forwarded_allow_ips,
            railway_edge=reader.raw("FORWARDED_ALLOW_IPS") is None and forwarded_allow_ips == ("*",),
            rate_limit_set=reader.raw("RATE_LIMIT") is not None,
            rate_limit_ipv6_prefix=reader.ipv6_prefix("RATE_LIMIT_IPV6_PREFIX", RATE_LIMIT_IPV6_PREFIX),
            metrics=reader.boolean("METRICS") is not False,
            metrics_token=reader.token("METRICS_TOKEN"),
            sentry_dsn=reader.sentry_dsn("SENTRY_DSN"),
            sentry_traces_sample_rate=reader.fraction("SENTRY_TRACES_SAMPLE_RATE", 0.0),
        )


class _Reader:
    """Reads one variable at a time and says exactly what is wrong with it."""

    def __init__(self, environ: Mapping[str, str]):
        self.environ = environ

    def raw(self, name: str) -> str | None:
        return self.environ.get(name)

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.raw(name)
        if value is None:
            return default
        if value.strip().lower() not in choices:
            raise SettingError(name, value, "is not a known value", f"use one of {', '.join(choices)}")
        return value.strip().lower()

    def boolean(self, name: str) -> bool | None:
        value = self.raw(name)
        if value is None:
            return None
        word = value.strip().lower()
        if word in TRUE_WORDS | FALSE_WORDS:
            return word in TRUE_WORDS
        raise SettingError(name, value, "is not a boolean", "use true or false (or 1/0, yes/no, on/off)")

    def integer(self, name: str, default: int | None, *, low: int, high: int) -> int | None:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(value.strip())
        except ValueError:
            raise SettingError(name, value, "is not a whole number", f"use a number from {low} to {high}") from None
        if not low <= number <= high:
            raise SettingError(name, value, "is out of range", f"use a number from {low} to {high}")
        return number

    def fraction(self, name: str, default: float) -> float:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = float(value.strip())
        except ValueError:
            raise SettingError(name, value, "is not a number", "use a fraction from 0 to 1, e.g. 0.1") from None
        if not 0.0 <= number <= 1.0:
            raise SettingError(name, value, "is out of range", "use a fraction from 0 to 1, e.g. 0.1")
        return number

    def rate_limit(self, name: str, default: str) -> str | None:
        value = self.raw(name)
        if value is None:
            return default
        if value.strip().lower() in RATE_LIMIT_OFF:
            return None
        try:
            items = parse_many(value)
        except ValueError:
            items = []
        if items and all(item.amount >= 1 for item in items):
            return value.strip()
        # "0/minute" would parse, and then refuse every request.
        raise SettingError(
            name, value, "is not a rate limit", "use a count per period, e.g. 100/minute or 10/second, or off"
        )

    def redis_url(self, name: str) -> str | None:
        value = self.raw(name)
        if value is None:
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in REDIS_SCHEMES or not (parts.hostname or parts.path):
            raise SettingError(name, value, "is not a Redis URL", "use redis://host:6379/0 or unset it")
        return value.strip()

    def ipv6_prefix(self, name: str, default: int) -> int:
        """A prefix length, written 56 or /56."""
        value = self.raw(name)
        if value is None:
            return default
        low, high = IPV6_PREFIX_RANGE
        text = value.strip().removeprefix("/")
        if not text.isdigit() or not low <= int(text) <= high:
            raise SettingError(
                name, value, "is not an IPv6 prefix length", f"use a number from {low} to {high}, e.g. 56 or 64"
            )
        return int(text)

    def forwarded_allow_ips(self, name: str) -> tuple[str, ...]:
        """gunicorn's FORWARDED_ALLOW_IPS: the peers whose X-Forwarded-* headers are believed.

        Unset on Railway, it is "*" for gunicorn (which reads only the scheme
        from it), and the app trusts the edge, not its peers
        (Settings.railway_edge; web/security.py): Railway publishes neither the
        edge's source addresses nor the private network's, and any service of
        the project can reach this port over the private network. So the
        client's address is the edge's X-Real-IP, believed only on a request
        that bears the edge's marks (X-Railway-Edge, and an X-Real-IP that is
        an address) from a peer outside the private network's IPv6 range
        (fc00::/7, where legacy environments' private traffic comes from; the
        edge reaches the container over IPv4). Any other request is its TCP
        peer. What remains open: a service on the private network's IPv4 side
        (environments since 2025-10-16) can forge the marks; setting
        FORWARDED_ALLOW_IPS to the edge's addresses, as the logs show them
        (peer_ip), closes it.
        """
        value = self.raw(name)
        if value is None:
            on_railway = any(self.raw(marker) for marker in RAILWAY_MARKERS)
            value = "*" if on_railway else GUNICORN_FORWARDED_ALLOW_IPS
        entries = tuple(entry.strip() for entry in value.split(",") if entry.strip())
        for entry in entries:
            if entry == "*":
                continue
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise SettingError(
                    name, value, "is not a list of addresses", "use e.g. 127.0.0.1,10.0.0.0/8 or *"
                ) from None
        if not entries or ("*" in entries and len(entries) > 1):
            raise SettingError(name, value, "is not a list of addresses", "use e.g. 127.0.0.1,10.0.0.0/8 or *")
        return entries

    def token(self, name: str) -> str | None:
        value = self.raw(name)
        if value is None or value == "":
            return None
        if len(value) < 16 or not value.isprintable() or " " in value:
            raise SettingError(
                name, "<hidden>", "is not a usable token", "use 16 or more printable characters without spaces"
            )
        return value

    def sentry_dsn(self, name: str) -> str | None:
        value = self.raw(name)
        if value is None or value.strip() == "":
            return None
        if not _is_sentry_dsn(value.strip()):
            raise SettingError(
                name, value, "is not a Sentry DSN", "copy it from Sentry: https://<key>@<host>/<project>"
            )
        return value.strip()


def _is_sentry_dsn(value: str) -> bool:
    """The shape sentry-sdk's Dsn parser accepts: scheme, public key, host, numeric project id."""
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 (a port out of range raises ValueError)
    except ValueError:
        return False
    project = parts.path.rstrip("/").rpartition("/")[2]
    return parts.scheme in SENTRY_SCHEMES and bool(parts.hostname) and bool(parts.username) and project.isdigit()


def load_settings_or_exit(environ: Mapping[str, str] = os.environ) -> Settings:
    """Return the settings, or refuse the start with one JSON line naming the variable."""
    try:
        return Settings.from_env(environ)
    except SettingError as error:
        refuse_start(error)


def refuse_start(error: SettingError, *, hide_value: bool = False) -> NoReturn:
    """Stop the start with one JSON line naming the variable, and exit 78; `hide_value` keeps a secret out of it."""
    from .logs import configure_logging

    configure_logging("info")
    shown = "(hidden)" if hide_value else error.value
    message = str(error).replace(repr(error.value), shown, 1) if hide_value else str(error)
    logging.getLogger(__name__).error(
        "Refusing to start: %s", message, extra={"variable": error.variable, "value": shown}
    )
    sys.exit(EXIT_BAD_CONFIG)
