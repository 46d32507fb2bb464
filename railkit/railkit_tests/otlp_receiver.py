"""A stand-in for Railway's tracing collector: OTLP/HTTP on loopback, each export decoded into plain spans.

It answers POST /v1/traces as a collector does (an ExportTraceServiceResponse)
and keeps every span with its resource's attributes and the request's headers.
OpenTelemetry's protobuf classes are imported when it starts: only projects
generated with use_tracing=yes have them.
"""

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# OTLP's SpanKind for the span of a request a server answers.
SPAN_KIND_SERVER = 2


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    kind: int
    trace_id: str
    attributes: dict
    resource: dict


def _value(any_value):
    """An OTLP AnyValue as the Python value it holds."""
    which = any_value.WhichOneof("value")
    return getattr(any_value, which) if which else None


def _attributes(key_values) -> dict:
    return {pair.key: _value(pair.value) for pair in key_values}


class _Collector(BaseHTTPRequestHandler):
    def do_POST(self):
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        export = ExportTraceServiceRequest.FromString(body)
        spans = [
            ReceivedSpan(span.name, span.kind, span.trace_id.hex(), _attributes(span.attributes), resource)
            for resource_spans in export.resource_spans
            for resource in [_attributes(resource_spans.resource.attributes)]
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]
        with self.server.lock:
            self.server.spans.extend(spans)
            self.server.headers.append(dict(self.headers))
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


class Receiver:
    """Started on a free loopback port; `endpoint` is what OTEL_EXPORTER_OTLP_ENDPOINT names."""

    def __init__(self):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
        self.server.lock = threading.Lock()
        self.server.spans = []
        self.server.headers = []
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def spans(self) -> list[ReceivedSpan]:
        with self.server.lock:
            return list(self.server.spans)

    def headers(self) -> list[dict]:
        with self.server.lock:
            return list(self.server.headers)

    def server_spans(self) -> list[ReceivedSpan]:
        return [span for span in self.spans() if span.kind == SPAN_KIND_SERVER]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
