"""Traces, opt-in: what a real cluster's workers export to a local OTLP/HTTP receiver, and what it costs when off."""

import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from railkit.settings import EXIT_BAD_CONFIG, SettingError
from railkit.tracing import check_settings

from .otlp_receiver import Receiver
from .servers import PROJECT_ROOT, wait_until

# Tests of projects generated with use_tracing=yes, and of those generated without it (conftest deselects).
TRACED = pytest.mark.use_tracing("yes")
UNTRACED = pytest.mark.use_tracing("no")
# The workers of the cluster under test; each must export its own spans.
WORKERS = 2
# Requests sent at once, a batch at a time, until every worker has served some.
BATCH = 24

# Builds the fixture app as gunicorn's master does, then says what that left behind in the process.
BUILD_APP = """
import json, sys, threading
# redis-py 8 imports OpenTelemetry's API and SDK itself when they are installed (its own observability):
# what counts is what the platform adds on top.
import redis
already = {name for name in sys.modules if name.startswith("opentelemetry")}
before = threading.active_count()
from railkit_tests.fixture_app import create_app
app = create_app()
trace = sys.modules.get("opentelemetry.trace")
added = sorted(name for name in sys.modules if name.startswith("opentelemetry") and name not in already)
print(json.dumps({
    "opentelemetry_imported": added[:3],
    "new_threads": threading.active_count() - before,
    "provider": type(trace.get_tracer_provider()).__name__ if trace else None,
    "instrumented": bool(getattr(app, "_is_instrumented_by_opentelemetry", False)),
}))
"""


@pytest.fixture
def collector():
    """A local stand-in for Railway's tracing collector."""
    receiver = Receiver()
    yield receiver
    receiver.stop()


def traced_env(collector: Receiver, **extra) -> dict:
    """What Railway injects, pointed at the local receiver; spans wait for the worker's exit (no timed export)."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_HEADERS": "x-railway-probe=traced",
        "OTEL_SERVICE_NAME": "traced-fixture",
        "OTEL_SERVICE_VERSION": "abc1234",
        "OTEL_BSP_SCHEDULE_DELAY": "600000",
        **extra,
    }


def build_app(env: dict) -> dict:
    """Build the app in a fresh interpreter with `env` on top of this one's (None removes a variable)."""
    environ = {**os.environ, **env}
    environ = {name: value for name, value in environ.items() if value is not None}
    finished = subprocess.run(
        [sys.executable, "-c", BUILD_APP], cwd=PROJECT_ROOT, env=environ, capture_output=True, text=True, timeout=60
    )
    assert finished.returncode == 0, finished.stderr + finished.stdout
    lines = finished.stdout.strip().splitlines()
    return {"result": json.loads(lines[-1]), "logs": [json.loads(line) for line in lines[:-1] if line.startswith("{")]}


def send_until_every_worker_served(server) -> list[str]:
    """Request ids sent to `/`, in concurrent batches, until every worker's access log shows one of them."""
    sent: list[str] = []

    def get(request_id: str):
        status, headers, _ = server.request("/", headers={"X-Request-ID": request_id})
        assert status == 200 and headers["X-Request-ID"] == request_id

    def every_worker_served():
        ids = [f"trace-probe-{len(sent) + number}" for number in range(BATCH)]
        with ThreadPoolExecutor(BATCH) as pool:
            list(pool.map(get, ids))
        sent.extend(ids)
        pids = {log["pid"] for log in list(server.logs) if log.get("request_id") in sent}
        return len(pids) >= WORKERS

    # Half a second apart: a worker's access lines stay under its share of the log budget (200 a second).
    wait_until(every_worker_served, interval=0.5, message=f"requests served by {WORKERS} workers")
    return sent


def access_lines(server, request_ids: list[str]) -> dict[str, dict]:
    wanted = set(request_ids)
    return {log["request_id"]: log for log in list(server.logs) if log.get("request_id") in wanted and "status" in log}


@TRACED
@pytest.mark.cluster
def test_every_worker_exports_each_request_span_and_none_is_lost_at_sigterm(serve, collector):
    server = serve(traced_env(collector, WEB_CONCURRENCY=str(WORKERS), ACCESS_LOG="all", RATE_LIMIT="off"))
    sent = send_until_every_worker_served(server)
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0

    # Every span was still in its worker's batch (no timed export): only the flush at exit sent it.
    spans = wait_until(lambda: collector.server_spans() if len(collector.server_spans()) >= len(sent) else None)
    by_request = {span.attributes.get("request_id"): span for span in spans}
    assert sorted(by_request) == sorted(sent) and len(spans) == len(sent), "a request without its one span"

    workers = {span.resource["process.pid"] for span in spans}
    instances = {span.resource["service.instance.id"] for span in spans}
    assert len(workers) == len(instances) == WORKERS, "each worker is an instance of its own"
    assert server.process.pid not in workers, "the master exported spans"
    assert {span.resource["service.name"] for span in spans} == {"traced-fixture"}
    assert {span.resource["service.version"] for span in spans} == {"abc1234"}
    assert all(headers.get("x-railway-probe") == "traced" for headers in collector.headers())

    # The trace id is on the access line of the very request the span is of, logged by the same worker.
    lines = access_lines(server, sent)
    assert sorted(lines) == sorted(sent)
    for request_id, span in by_request.items():
        assert lines[request_id]["trace_id"] == span.trace_id
        assert lines[request_id]["pid"] == span.resource["process.pid"]
    # Health probes are not traced (the cluster's start was awaited through /health).
    assert not [span for span in collector.spans() if "health" in span.name]


@TRACED
@pytest.mark.cluster
def test_a_failing_request_logs_its_trace_id_on_its_problem_line(serve, collector):
    server = serve(traced_env(collector), app="railkit_tests.faulty_app:app")
    status, _, _ = server.request("/boom", headers={"X-Request-ID": "trace-boom-1"})
    assert status == 500
    server.signal(signal.SIGTERM)
    server.wait_exit()
    [span] = wait_until(
        lambda: [s for s in collector.server_spans() if s.attributes.get("request_id") == "trace-boom-1"]
    )
    problem = server.wait_for_log(lambda log: log.get("request_id") == "trace-boom-1" and log.get("exc_info"))
    assert problem["trace_id"] == span.trace_id


@TRACED
def test_the_master_builds_the_app_instrumented_with_no_provider_and_no_thread():
    """gunicorn's master loads the app once and forks: a provider or export thread made there would be copied."""
    built = build_app({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})["result"]
    assert built["instrumented"]
    assert built["provider"] == "ProxyTracerProvider"
    assert built["new_threads"] == 0


def test_without_the_endpoint_nothing_of_opentelemetry_is_imported():
    """Unset, tracing costs nothing: no module, no middleware, whatever the project was generated with."""
    built = build_app({"OTEL_EXPORTER_OTLP_ENDPOINT": None})["result"]
    # No provider set: none at all, or the API's placeholder where redis-py imported the API itself.
    assert built.pop("provider") in (None, "ProxyTracerProvider")
    assert built == {"opentelemetry_imported": [], "new_threads": 0, "instrumented": False}


@UNTRACED
def test_a_project_without_tracing_says_the_endpoint_is_ignored():
    built = build_app({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert built["result"]["opentelemetry_imported"] == [] and not built["result"]["instrumented"]
    [warning] = [log for log in built["logs"] if log.get("variable") == "OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert warning["level"] == "warn" and "use_tracing=no" in warning["message"]


# Each refused in-process; one more through gunicorn proves the start's wiring.
NONSENSE = [
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://collector"),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
    ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
    ("OTEL_TRACES_SAMPLER", "sometimes"),
    ("OTEL_TRACES_SAMPLER_ARG", "2"),
    ("OTEL_TRACES_SAMPLER_ARG", "nan"),
    ("OTEL_TRACES_SAMPLER_ARG", "a tenth"),
]
SAMPLED = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_SAMPLER": "parentbased_traceidratio"}


@pytest.mark.parametrize(("variable", "value"), NONSENSE)
def test_nonsense_tracing_settings_are_refused_naming_the_variable(variable, value):
    with pytest.raises(SettingError) as refused:
        check_settings({**SAMPLED, variable: value})
    assert refused.value.variable == variable and refused.value.value == value


def test_the_standard_tracing_settings_pass():
    check_settings({**SAMPLED, "OTEL_TRACES_SAMPLER_ARG": "0.1", "OTEL_EXPORTER_OTLP_PROTOCOL": "HTTP/protobuf"})
    check_settings({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector.railway.internal:4318"})


@TRACED
def test_a_nonsense_sampler_stops_the_cluster_with_one_json_line(serve):
    server = serve({**SAMPLED, "OTEL_TRACES_SAMPLER_ARG": "2"}, wait=False)
    assert server.wait_exit() == EXIT_BAD_CONFIG
    refusal = server.wait_for_log(lambda log: log.get("message", "").startswith("Refusing to start"))
    assert refusal["variable"] == "OTEL_TRACES_SAMPLER_ARG" and refusal["level"] == "error"
