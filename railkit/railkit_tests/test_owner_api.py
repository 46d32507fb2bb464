"""The owner's declared API on the app: their own settings, and readiness checks of their own."""

import json
import threading
import time

import pytest

import railkit
from railkit.settings import EXIT_BAD_CONFIG

from .owner_api_app import create_app


def _refusal(capsys) -> dict:
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    return json.loads(line)


@pytest.mark.parametrize(
    ("kind", "value", "options", "expected"),
    [
        (int, "42", {"minimum": 1}, 42),
        (float, "0.5", {}, 0.5),
        (bool, "Yes", {}, True),
        (bool, "off", {}, False),
        (str, "live", {"choices": ("live", "test")}, "live"),
        (str, None, {"default": "test"}, "test"),
        (int, None, {"default": None}, None),
    ],
)
def test_a_setting_is_parsed_as_its_type(kind, value, options, expected):
    environ = {} if value is None else {"OWN": value}
    assert railkit.setting("OWN", kind, environ=environ, **options) == expected


@pytest.mark.parametrize(
    ("kind", "value", "options", "says"),
    [
        (int, "lots", {}, "is not a whole number"),
        (int, "0", {"minimum": 1, "maximum": 500}, "is out of range: use a number from 1 to 500"),
        (float, "1e999x", {}, "is not a number"),
        (bool, "maybe", {}, "is not a boolean"),
        (str, "staging", {"choices": ("live", "test")}, "is not a known value: use one of live, test"),
        (str, "", {}, "is empty"),
        (str, None, {}, "is required"),
    ],
)
def test_a_bad_value_refuses_the_start_with_one_json_line(capsys, kind, value, options, says):
    environ = {} if value is None else {"OWN": value}
    with pytest.raises(SystemExit) as refused:
        railkit.setting("OWN", kind, environ=environ, **options)
    assert refused.value.code == EXIT_BAD_CONFIG
    line = _refusal(capsys)
    assert line["level"] == "error" and line["variable"] == "OWN"
    assert line["message"].startswith("Refusing to start: OWN=") and says in line["message"]


def test_a_secret_setting_keeps_its_value_out_of_the_log(capsys):
    with pytest.raises(SystemExit):
        railkit.setting("API_KEY", int, environ={"API_KEY": "sk-live-abcdef"}, secret=True)
    output = capsys.readouterr().out
    assert "sk-live-abcdef" not in output and "API_KEY=(hidden)" in output


def test_a_setting_of_an_unknown_type_is_a_programming_error():
    with pytest.raises(TypeError, match="type must be one of"):
        railkit.setting("OWN", list)


def test_readiness_runs_the_owners_check(monkeypatch):
    app = create_app({"TESTING": True})
    ready = app.test_client().get("/health/ready")
    assert ready.status_code == 200
    assert ready.get_json()["checks"]["dependency:responseTime"][0]["status"] == "pass"

    monkeypatch.setenv("DEPENDENCY_DOWN", "1")
    down = app.test_client().get("/health/ready")
    assert down.status_code == 503 and down.mimetype == "application/problem+json"
    assert "dependency.internal" not in down.get_data(as_text=True), "an error's text reached the public answer"


def test_a_hanging_check_fails_at_its_deadline_and_is_never_run_twice_at_once(monkeypatch):
    monkeypatch.setenv("DEPENDENCY_SECONDS", "3")
    client = create_app({"TESTING": True}).test_client()
    started = time.monotonic()
    assert client.get("/health/ready").status_code == 503
    assert time.monotonic() - started < 2.5, "the 1 s deadline was not kept"
    before = threading.active_count()
    answers = [client.get("/health/ready").status_code for _ in range(50)]
    assert answers == [503] * 50
    assert threading.active_count() <= before, "each probe started another thread behind the hanging check"


@pytest.mark.parametrize("name", ["", "dependency"])
def test_a_readiness_check_needs_a_name_of_its_own(name):
    app = create_app({"TESTING": True})
    with pytest.raises(ValueError):
        railkit.add_readiness_check(app, name, lambda: True)
