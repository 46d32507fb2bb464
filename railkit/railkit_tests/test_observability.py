"""What /health and the access log report, through Flask's test client with a real board."""

import json
import logging
import os

import pytest

from railkit.cluster import board
from railkit.logs import RailwayFormatter
from railkit.web.request_log import LineBudget


@pytest.fixture
def cluster_board(tmp_path):
    """A real scoreboard attached as this process's own, as in a gunicorn worker."""
    scoreboard = board.Board.create(tmp_path)
    board.attach(scoreboard)
    yield scoreboard
    board.attach(None)


def _cluster_check(client) -> dict:
    return client.get("/health").get_json(force=True)["checks"]["cluster:workers"][0]


def test_health_warns_when_fewer_workers_live_than_configured(client, cluster_board):
    cluster_board.set_master(os.getpid(), 2)
    cluster_board.claim(0, os.getpid())
    assert _cluster_check(client)["status"] == "warn"
    cluster_board.claim(1, os.getpid() + 1)
    assert _cluster_check(client)["status"] == "pass"


def test_health_labels_both_memory_figures(client):
    memory = client.get("/health").get_json(force=True)["checks"]["worker:memory"][0]
    assert memory["observedKind"] == "RSS"
    assert memory["observedValue"] == memory["rss_mib"] >= memory["uss_mib"] > 0


def test_readiness_fails_once_the_replica_is_stopping(client, cluster_board):
    cluster_board.set_master(os.getpid(), 1)
    assert client.get("/health/ready").status_code == 200
    cluster_board.set_stopping(1.0)
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert client.get("/health").status_code == 200, "liveness does not change"


def _access_lines(caplog):
    return [record for record in caplog.records if getattr(record, "path", None) == "/"]


@pytest.mark.parametrize(("mode", "logged"), [("all", 1), ("problems", 0), ("off", 0)])
def test_access_log_mode_decides_which_requests_are_logged(app, caplog, mode, logged):
    app.config["ACCESS_LOG"] = mode
    with caplog.at_level(logging.INFO):
        assert app.test_client().get("/").status_code == 200
    assert len(_access_lines(caplog)) == logged


def test_access_log_problems_mode_logs_server_errors(app, caplog):
    app.config["ACCESS_LOG"] = "problems"

    @app.get("/explode")
    def explode():
        raise RuntimeError("boom")

    with caplog.at_level(logging.INFO):
        app.test_client().get("/explode")
    assert [record.status for record in caplog.records if getattr(record, "path", None) == "/explode"] == [500]


def test_skipped_access_lines_are_counted_in_one_warning(caplog):
    now = [100.0]
    budget = LineBudget(2, clock=lambda: now[0])
    assert [budget.allow() for _ in range(5)] == [True, True, False, False, False]
    now[0] += 1
    with caplog.at_level(logging.WARNING):
        budget.allow()
    [warning] = [record for record in caplog.records if "skipped" in record.getMessage()]
    assert "3 lines skipped" in warning.getMessage()


def test_terminal_colours_never_reach_a_json_line():
    """werkzeug's development server colours its request lines; Railway would show the escapes."""
    record = logging.LogRecord("werkzeug", logging.INFO, __file__, 1, '\x1b[32m"GET / HTTP/1.1" 200 -\x1b[0m', (), None)
    line = json.loads(RailwayFormatter().format(record))
    assert line["message"] == '"GET / HTTP/1.1" 200 -'
    assert line["level"] == "info"
