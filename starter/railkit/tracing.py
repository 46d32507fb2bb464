"""Traces to an OTLP/HTTP collector (Railway's), set up in each worker and flushed when it leaves.

Nothing happens, and nothing of OpenTelemetry is imported, unless the project
was generated with use_tracing=yes and OTEL_EXPORTER_OTLP_ENDPOINT is set.
Then init_app instruments the app where it is built, in the master, which
starts no provider and no thread (a fork copies neither into a worker);
start_worker gives each worker its own provider, exporter and export thread
once the worker runs (after gevent patched it), and stop_worker sends the
worker's last spans before it exits.
"""

import logging
import math
import os
import re
import sys
import threading
import uuid
from urllib.parse import urlsplit

from . import project
from .logs import request_id
from .settings import EXIT_BAD_CONFIG, SettingError

log = logging.getLogger(__name__)

ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
# The one protocol the locked exporter speaks: gRPC's channels do not survive gunicorn's fork.
PROTOCOL = "http/protobuf"
PROTOCOL_VARIABLES = ("OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
# What the SDK builds from OTEL_TRACES_SAMPLER; it silently samples everything for any other value.
SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
RATIO_SAMPLERS = ("traceidratio", "parentbased_traceidratio")
# Not traced, as they are not logged: probes and scrapes would spend Railway's 1,000 spans per 10 s.
UNTRACED_PATHS = ("/health", "/health/ready", "/metrics")
# The instrumentation's own variables for untraced URLs; when one is set it replaces UNTRACED_PATHS.
EXCLUDED_URLS_VARIABLES = ("OTEL_PYTHON_FLASK_EXCLUDED_URLS", "OTEL_PYTHON_EXCLUDED_URLS")
# A leaving worker waits this long at most for its last spans to be sent (s).
FLUSH_SECONDS = 5
# Each server span's request id, under the key the log lines and problem bodies use.
REQUEST_ID_ATTRIBUTE = "request_id"
# The statement SQLAlchemy's pool sends to check a connection before each use (pre-ping): no span of its own.
POOL_PING = ";"

# Whether this process's app is instrumented (inherited by each worker), and the worker's provider.
_state = {"instrumented": False, "provider": None}


def init_app(app) -> None:
    """Instrument `app` when OTEL_EXPORTER_OTLP_ENDPOINT is set, refusing nonsense tracing settings; start nothing."""
    if not os.environ.get(ENDPOINT):
        return
    if not project.HAS_TRACING:
        log.warning(
            "%s is set, but this project was generated without tracing (use_tracing=no): no spans are sent",
            ENDPOINT,
            extra={"variable": ENDPOINT},
        )
        return
    refuse_nonsense_or_exit(os.environ)
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    excluded = None if any(os.environ.get(name) for name in EXCLUDED_URLS_VARIABLES) else untraced_urls()
    FlaskInstrumentor.instrument_app(app, response_hook=_tag_request_id, excluded_urls=excluded, enable_commenter=False)
    if project.HAS_DATABASE:
        from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

        if not PsycopgInstrumentor().is_instrumented_by_opentelemetry:
            PsycopgInstrumentor().instrument()
    _state["instrumented"] = True


def start_worker() -> None:
    """In a running worker: its own provider, exporter and export thread, and the trace id on its log lines."""
    if not _state["instrumented"] or _state["provider"] is not None:
        return
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # One instance per worker: the collector tells the workers' spans apart by it.
    attributes = {"service.instance.id": str(uuid.uuid4()), "process.pid": os.getpid()}
    if os.environ.get("OTEL_SERVICE_VERSION"):  # Railway sets it; the SDK reads no such variable
        attributes["service.version"] = os.environ["OTEL_SERVICE_VERSION"]
    resource = Resource.create(attributes)
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: project.NAME}))
    # The sampler is the SDK's, from OTEL_TRACES_SAMPLER; stop_worker shuts the provider down, not atexit.
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    batches = BatchSpanProcessor(OTLPSpanExporter())
    provider.add_span_processor(without_pool_pings(batches) if project.HAS_DATABASE else batches)
    trace.set_tracer_provider(provider)
    _state["provider"] = provider
    stamp_trace_ids(TraceIdFilter(trace.get_current_span))


def stop_worker() -> None:
    """Send the worker's last spans, waiting FLUSH_SECONDS at most: the batch would die with the process."""
    provider, _state["provider"] = _state["provider"], None
    if provider is None:
        return
    # In a thread of its own (a greenlet under gevent), so a collector that does not answer cannot hold the exit.
    stopping = threading.Thread(target=provider.shutdown, name="tracing-shutdown", daemon=True)
    stopping.start()
    stopping.join(FLUSH_SECONDS)
    if stopping.is_alive():
        log.warning("Tracing: the worker's last spans were not sent within %ss", FLUSH_SECONDS)


def untraced_urls() -> str:
    """UNTRACED_PATHS as the instrumentation's excluded URLs: comma-separated patterns searched in the full URL."""
    return ",".join(rf"^[a-z]+://[^/?#]*{re.escape(path)}(?:\?|$)" for path in UNTRACED_PATHS)


def refuse_nonsense_or_exit(environ) -> None:
    """Stop the start with one JSON line naming a tracing variable the exporter or sampler would misread."""
    try:
        check_settings(environ)
    except SettingError as error:
        log.error("Refusing to start: %s", error, extra={"variable": error.variable, "value": error.value})
        sys.exit(EXIT_BAD_CONFIG)


def check_settings(environ) -> None:
    endpoint = environ[ENDPOINT]
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingError(
            ENDPOINT, endpoint, "is not an http(s) URL", "set the collector's URL, e.g. http://host:4318"
        )
    for variable in PROTOCOL_VARIABLES:
        value = environ.get(variable)
        if value and value.strip().lower() != PROTOCOL:
            raise SettingError(variable, value, "is a protocol this project does not export with", f"set {PROTOCOL}")
    sampler = environ.get("OTEL_TRACES_SAMPLER")
    if sampler is not None and sampler.strip().lower() not in SAMPLERS:
        raise SettingError("OTEL_TRACES_SAMPLER", sampler, "is not a sampler", f"use one of {', '.join(SAMPLERS)}")
    argument = environ.get("OTEL_TRACES_SAMPLER_ARG")
    if sampler and sampler.strip().lower() in RATIO_SAMPLERS and argument is not None:
        try:
            ratio = float(argument)
        except ValueError:
            ratio = math.nan
        if not 0 <= ratio <= 1:
            fix = "give the share of traces kept, from 0 to 1, e.g. 0.1"
            raise SettingError("OTEL_TRACES_SAMPLER_ARG", argument, "is not a ratio", fix)


def _tag_request_id(span, _status, _headers) -> None:
    """The instrumentation's response hook: the request's id, as its log lines carry it, on its span."""
    current = request_id.get()
    if span is not None and current is not None:
        span.set_attribute(REQUEST_ID_ATTRIBUTE, current)


def without_pool_pings(inner):
    """A span processor passing every span to `inner` but the pool's pings (one per request that uses the database)."""
    from opentelemetry.sdk.trace import SpanProcessor

    class WithoutPoolPings(SpanProcessor):
        def on_start(self, span, parent_context=None) -> None:
            inner.on_start(span, parent_context)

        def on_end(self, span) -> None:
            attributes = span.attributes or {}
            if attributes.get("db.statement", attributes.get("db.query.text")) != POOL_PING:
                inner.on_end(span)

        def shutdown(self) -> None:
            inner.shutdown()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return inner.force_flush(timeout_millis)

    return WithoutPoolPings()


class TraceIdFilter(logging.Filter):
    """Stamps the trace id of the span in progress (when it is sampled) on each line logged while it lasts."""

    def __init__(self, current_span):
        super().__init__()
        self.current_span = current_span

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "trace_id"):
            context = self.current_span().get_span_context()
            if context.trace_flags.sampled:
                record.trace_id = f"{context.trace_id:032x}"
        return True


def stamp_trace_ids(trace_ids: logging.Filter) -> None:
    """Add the filter to every handler the JSON lines go through (the root's, gunicorn's error log's)."""
    handlers = {*logging.getLogger().handlers, *logging.getLogger("gunicorn.error").handlers}
    for handler in handlers:
        if not any(isinstance(existing, TraceIdFilter) for existing in handler.filters):
            handler.addFilter(trace_ids)
