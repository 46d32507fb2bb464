"""A stand-in for Railway's tracing collector: takes OTLP/HTTP exports on loopback and counts them."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        size = len(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        with self.server.lock:
            self.server.exports += 1
            self.server.bytes += size
        # A collector's answer: an empty ExportTraceServiceResponse, which is no bytes at all.
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class OtlpSink:
    """Serves while in a `with` block; `endpoint` is what OTEL_EXPORTER_OTLP_ENDPOINT names."""

    def __enter__(self) -> "OtlpSink":
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
        self.server.lock = threading.Lock()
        self.server.exports = self.server.bytes = 0
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def exports(self) -> int:
        return self.server.exports

    @property
    def bytes(self) -> int:
        return self.server.bytes

    def __exit__(self, *exc_info) -> None:
        self.server.shutdown()
        self.server.server_close()
