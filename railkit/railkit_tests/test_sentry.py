"""Errors to Sentry, opt-in: a local stand-in for Sentry's ingest receives what a real cluster sends."""

import gzip
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from .servers import PROJECT_ROOT, wait_until


class _Ingest(BaseHTTPRequestHandler):
    """Accepts envelopes the way Sentry's /api/<project>/envelope/ does, and keeps their events."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        for line in body.splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict) and "exception" in item:
                self.server.events.append(item)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def ingest():
    """A threaded HTTP server on loopback standing in for Sentry; `.dsn` points at it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ingest)
    server.events = []
    server.dsn = f"http://publickey@127.0.0.1:{server.server_address[1]}/1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.cluster
def test_unhandled_exception_reaches_sentry_with_its_request_id(serve, ingest):
    env = {"SENTRY_DSN": ingest.dsn, "RAILWAY_GIT_COMMIT_SHA": "abc1234", "RAILWAY_ENVIRONMENT_NAME": "staging"}
    server = serve(env, app="railkit_tests.faulty_app:app")
    status, headers, _ = server.request("/boom", headers={"X-Request-ID": "sentry-probe-1"})
    assert status == 500 and headers["X-Request-ID"] == "sentry-probe-1"

    def event_for_the_request():
        return next((e for e in ingest.events if e.get("tags", {}).get("request_id") == "sentry-probe-1"), None)

    event = wait_until(event_for_the_request, message="the event at the Sentry stand-in")
    assert [value["type"] for value in event["exception"]["values"]] == ["RuntimeError"]
    assert event["release"] == "abc1234"
    assert event["environment"] == "staging"
    # No personal data by default: no client address, cookies or user.
    assert "ip_address" not in event.get("user", {})
    assert "Cookie" not in event.get("request", {}).get("headers", {})


def _sentry_imported(env: dict) -> bool:
    code = (
        "import sys; from railkit_tests import fixture_app; "
        "fixture_app.create_app(); print('sentry_sdk' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip().splitlines()[-1] == "True"


def test_sentry_sdk_is_imported_only_when_a_dsn_is_set():
    env = {name: value for name, value in os.environ.items() if name != "SENTRY_DSN"}
    assert _sentry_imported(env) is False
    assert _sentry_imported({**env, "SENTRY_DSN": "http://publickey@127.0.0.1:9/1"}) is True
