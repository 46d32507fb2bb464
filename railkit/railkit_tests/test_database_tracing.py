"""Traces of a request's SQL: psycopg's statements as children of the request's span."""

import signal

import pytest

from railkit.db.testing import create_database, postgres  # noqa: F401 (a fixture)

from .servers import wait_until
from .test_database import DB_APP
from .test_tracing import collector, traced_env  # noqa: F401 (a fixture)

# OTLP's SpanKind for a call out to another service.
SPAN_KIND_CLIENT = 3


@pytest.mark.use_tracing("yes")
@pytest.mark.cluster
def test_a_request_s_statements_are_spans_of_its_trace_the_pool_s_pings_are_not(serve, postgres, collector):  # noqa: F811
    url = create_database(postgres, "traced")
    server = serve({**traced_env(collector), "DATABASE_URL": url, "WEB_CONCURRENCY": "1"}, app=DB_APP)
    # The second request reuses the pooled connection, which SQLAlchemy checks first (pre-ping).
    for request_id in ("trace-sql-1", "trace-sql-2"):
        assert server.request("/db/backend", headers={"X-Request-ID": request_id})[0] == 200
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0

    [second] = wait_until(
        lambda: [s for s in collector.server_spans() if s.attributes.get("request_id") == "trace-sql-2"]
    )
    children = [span for span in collector.spans() if span.trace_id == second.trace_id and span is not second]
    assert [(span.kind, span.attributes["db.statement"]) for span in children] == [
        (SPAN_KIND_CLIENT, "SELECT pg_backend_pid()")
    ]
    assert children[0].attributes["db.system"] == "postgresql"
