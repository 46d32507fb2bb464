"""The app layer through Flask's test client: factory, problems, health, headers."""

import datetime
import gc
import json
import logging
import uuid
import weakref
from decimal import Decimal

import pytest
from flask import after_this_request

from railkit import logs
from railkit.web.bodies import MAX_JSON_DEPTH, ParseBudget, parse_cost
from railkit.web.problems import Problem
from railkit.web.request_log import LineBudget

from .fixture_app import create_app

PROBLEM = "application/problem+json"


def _problem(response, status):
    assert response.status_code == status, response.data
    assert response.mimetype == PROBLEM
    body = response.get_json(force=True)
    assert body["status"] == status
    assert {"type", "title", "detail", "instance", "request_id"} <= set(body)
    assert body["request_id"] == response.headers["X-Request-ID"]
    return body


def test_factory_applies_test_config():
    assert not create_app().testing
    assert create_app({"TESTING": True}).testing


def test_per_request_hooks_run_and_are_not_kept():
    """The app remembers which functions are coroutines; a function made per request must still go away."""
    app = create_app({"TESTING": True})
    made = []

    @app.get("/stamped")
    def stamped():
        @after_this_request
        def stamp(response):
            response.headers["X-Stamped"] = str(len(made))
            return response

        made.append(weakref.ref(stamp))
        return {}

    client = app.test_client()
    assert [client.get("/stamped").headers["X-Stamped"] for _ in range(3)] == ["1", "2", "3"]
    gc.collect()
    assert all(ref() is None for ref in made)


def test_index(client):
    assert client.get("/").get_json()["message"].startswith("Hello")


@pytest.mark.parametrize("host", ["localhost", "healthcheck.railway.app", "anything.example"])
def test_health_passes_from_any_host(client, host):
    response = client.get("/health", headers={"Host": host})
    assert response.status_code == 200
    assert response.mimetype == "application/health+json"
    body = response.get_json(force=True)
    assert body["status"] == "pass"
    assert {"worker:uptime", "worker:memory", "cluster:workers"} <= set(body["checks"])


def test_ready_passes_without_dependencies(client):
    assert client.get("/health/ready").get_json(force=True)["status"] == "pass"


def test_ready_fails_as_a_problem_when_redis_is_unreachable(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    body = _problem(create_app({"TESTING": True}).test_client().get("/health/ready"), 503)
    assert "Redis" in body["detail"]


def test_not_found(client):
    assert _problem(client.get("/no/such/page"), 404)["instance"] == "/no/such/page"


def test_method_not_allowed_keeps_allow(client):
    response = client.delete("/")
    _problem(response, 405)
    assert "GET" in response.headers["Allow"]


@pytest.mark.parametrize(
    "body",
    [b"{bad json", b'{"a": "\xff\xfe"}', b"[" * 100_000 + b"]" * 100_000],
    ids=["malformed", "invalid-utf8", "deeply-nested"],
)
def test_bad_json_is_a_400(client, body):
    _problem(client.post("/echo", data=body, content_type="application/json"), 400)


def test_wrong_content_type_is_a_415(client):
    _problem(client.post("/echo", data="a=1", content_type="application/x-www-form-urlencoded"), 415)


def test_body_over_the_limit_is_a_413(app):
    body = json.dumps({"pad": "x" * (app.config["MAX_CONTENT_LENGTH"] + 1)})
    _problem(app.test_client().post("/echo", data=body, content_type="application/json"), 413)


def test_route_problem_is_a_422_with_extras(client):
    body = _problem(client.post("/echo", json=[1, 2]), 422)
    assert body["errors"][0]["pointer"] == "#"


def test_unhandled_exception_is_a_generic_500(app):
    @app.get("/explode")
    def explode():
        raise KeyError("database password is hunter2")

    for debug in (False, True):
        app.debug = debug
        body = _problem(app.test_client().get("/explode"), 500)
        assert "hunter2" not in json.dumps(body)


def test_problem_helper_sets_title_and_type(app):
    @app.get("/out-of-stock")
    def out_of_stock():
        raise Problem(409, "No more widgets", type="https://example.com/problems/stock")

    body = _problem(app.test_client().get("/out-of-stock"), 409)
    assert body["title"] == "Conflict"
    assert body["type"] == "https://example.com/problems/stock"


def test_security_headers_on_every_response(client):
    for response in (client.get("/"), client.get("/missing")):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Cache-Control"] == "no-store"
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert "Strict-Transport-Security" not in response.headers


def test_behind_railways_edge_scheme_and_client_come_from_one_proxy_hop(app):
    @app.get("/whoami")
    def whoami():
        from flask import request

        return {"ip": request.remote_addr, "scheme": request.scheme}

    response = app.test_client().get(
        "/whoami", headers={"X-Forwarded-For": "6.6.6.6, 203.0.113.7", "X-Forwarded-Proto": "https"}
    )
    assert response.get_json() == {"ip": "203.0.113.7", "scheme": "https"}
    assert "max-age" in response.headers["Strict-Transport-Security"]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"X-Railway-Request-Id": "rw-1", "X-Request-ID": "mine"}, "rw-1"),
        ({"X-Request-ID": "mine-2"}, "mine-2"),
        ({"X-Request-ID": "bad id with spaces\\n"}, None),
    ],
    ids=["railway-first", "incoming", "invalid-replaced"],
)
def test_request_id_is_chosen_and_echoed(client, headers, expected):
    echoed = client.get("/", headers=headers).headers["X-Request-ID"]
    if expected:
        assert echoed == expected
    else:
        assert len(echoed) == 32 and " " not in echoed


def test_rate_limit_answers_429_problem_with_retry_after(monkeypatch):
    monkeypatch.setenv("RATE_LIMIT", "2/minute")
    client = create_app({"TESTING": True}).test_client()
    assert [client.get("/").status_code for _ in range(2)] == [200, 200]
    response = client.get("/")
    _problem(response, 429)
    assert int(response.headers["Retry-After"]) > 0
    assert client.get("/health").status_code == 200


def test_access_log_budget_caps_lines_per_second_and_counts_the_rest():
    now = [100.0]
    budget = LineBudget(200, clock=lambda: now[0])
    assert sum(budget.allow() for _ in range(500)) == 200
    assert budget.skipped == 300
    now[0] += 1
    assert budget.allow() and budget.skipped == 0


def test_json_provider_keeps_flasks_output(app):
    moment = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    identifier = uuid.UUID(int=1)
    with app.app_context():
        encoded = app.json.dumps({"b": 1, "a": moment, 3: Decimal("1.5"), "u": identifier})
    assert encoded.index('"3"') < encoded.index('"a"') < encoded.index('"b"'), "keys are sorted"
    assert json.loads(encoded) == {"3": "1.5", "a": "Wed, 01 Jan 2020 00:00:00 GMT", "b": 1, "u": str(identifier)}


def test_json_keeps_integers_beyond_64_bits(client):
    big = 2**100 + 1
    response = client.post("/echo", data=json.dumps({"n": big}), content_type="application/json")
    assert response.status_code == 200
    assert json.loads(response.data)["received"]["n"] == big


def test_json_as_deep_as_allowed_is_answered_and_deeper_is_a_400(client):
    def nested(depth):
        return '{"a":' + "[" * (depth - 1) + "]" * (depth - 1) + "}"

    assert client.post("/echo", data=nested(MAX_JSON_DEPTH), content_type="application/json").status_code == 200
    body = _problem(client.post("/echo", data=nested(MAX_JSON_DEPTH + 1), content_type="application/json"), 400)
    assert "nested deeper" in body["detail"]


def test_json_too_costly_to_parse_is_a_413_before_it_is_parsed(monkeypatch):
    monkeypatch.setenv("WORKER_MAX_MEMORY_MB", "32")
    client = create_app({"TESTING": True}).test_client()
    bomb = b"[" + b"{}," * 300_000 + b"{}]"  # 0.9 MB: about 60 MB of Python objects
    assert parse_cost(bomb) > 16 * 2**20
    body = _problem(client.post("/echo", data=bomb, content_type="application/json"), 413)
    assert "memory" in body["detail"]


def test_parse_budget_makes_bodies_wait_their_turn():
    budget = ParseBudget(100)
    assert budget.reserve(80, wait=0)
    assert not budget.reserve(30, wait=0.05)
    budget.release(80)
    assert budget.reserve(30, wait=0)


def test_log_budget_sums_invalid_requests_and_never_holds_back_lifecycle(caplog):
    budget = logs.LineBudget()
    budget.master_pid = -1  # as in a worker

    def passes(name, message, level=logging.WARNING):
        return budget.filter(logging.LogRecord(name, level, __file__, 1, message, None, None))

    shown = sum(passes("gunicorn.error", "Invalid request from ip=192.0.2.1: bad line") for _ in range(1000))
    assert shown <= 2 * logs.INVALID_REQUESTS_SHOWN  # one window, or two if the second turned meanwhile
    assert sum(passes("railkit_tests.fixture_app", "hello", logging.INFO) for _ in range(1000)) <= (
        2 * logs.WORKER_LINES_PER_SECOND
    )
    assert all(passes("railkit.cluster.hooks", "Worker 1 died") for _ in range(1000))
    assert all(passes("gunicorn.error", "Booting worker with pid: 7", logging.INFO) for _ in range(100))
    budget.window -= 1  # the second is over
    with caplog.at_level(logging.WARNING):
        budget.flush()
    summaries = [record for record in caplog.records if getattr(record, "summary", False)]
    # One summary per second the loop spanned (a second with only the shown ones needs none).
    assert sum(summary.invalid_requests for summary in summaries) >= 1000 - shown
    assert "invalid requests in the last second" in summaries[0].getMessage()
