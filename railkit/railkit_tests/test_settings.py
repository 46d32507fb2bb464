"""Each variable: accepted forms, refused values, and the one-line refusal at start."""

import json
import subprocess
import sys

import pytest

from railkit.plans import DEFAULT_PLAN, PLANS
from railkit.settings import EXIT_BAD_CONFIG, SettingError, Settings

from .servers import CLUSTER_COMMAND, PROJECT_ROOT


def test_defaults_come_from_the_plan():
    settings = Settings.from_env({})
    plan = PLANS[DEFAULT_PLAN]
    assert settings.plan == plan
    assert settings.clustering is plan.clustering
    assert settings.worker_max_memory_mb == plan.worker_max_memory_mb
    assert settings.rate_limit == plan.rate_limit
    assert settings.graceful_timeout == 10
    assert settings.port == 8000
    assert settings.web_concurrency is None
    assert settings.redis_url is None
    assert settings.shutdown_delay == plan.shutdown_delay
    assert settings.request_timeout == 30


def test_zero_turns_the_lame_duck_phase_and_the_request_timeout_off():
    settings = Settings.from_env({"SHUTDOWN_DELAY": "0", "REQUEST_TIMEOUT": "0"})
    assert (settings.shutdown_delay, settings.request_timeout) == (0, 0)


@pytest.mark.parametrize("word", ["true", "TRUE", "1", "yes", "On"])
def test_clustering_accepts_true_words(word):
    assert Settings.from_env({"ENABLE_CLUSTERING": word}).clustering is True


@pytest.mark.parametrize("word", ["false", "False", "0", "no", "OFF"])
def test_clustering_accepts_false_words(word):
    assert Settings.from_env({"ENABLE_CLUSTERING": word}).clustering is False


@pytest.mark.parametrize("plan", sorted(PLANS))
def test_railway_plan_picks_its_defaults(plan):
    settings = Settings.from_env({"RAILWAY_PLAN": plan})
    assert settings.plan.name == plan
    assert settings.clustering is PLANS[plan].clustering


def test_web_concurrency_alone_implies_clustering():
    assert Settings.from_env({"WEB_CONCURRENCY": "3", "RAILWAY_PLAN": "free"}).clustering is True


BAD_VALUES = [
    ("ENABLE_CLUSTERING", "maybe"),
    ("ENABLE_CLUSTERING", ""),
    ("WEB_CONCURRENCY", "lots"),
    ("WEB_CONCURRENCY", "0"),
    ("WEB_CONCURRENCY", "-2"),
    ("WORKER_MAX_MEMORY_MB", "12"),
    ("WORKER_MAX_MEMORY_MB", "big"),
    ("GRACEFUL_TIMEOUT", "soon"),
    ("GRACEFUL_TIMEOUT", "0"),
    ("RATE_LIMIT", "fast"),
    ("METRICS", "sometimes"),
    ("RATE_LIMIT", "100/fortnight"),
    ("RATE_LIMIT", "0/minute"),
    ("RATE_LIMIT", "100/minute;0/second"),
    ("REDIS_URL", "http://example.com"),
    ("REDIS_URL", "not a url"),
    ("PORT", "eighty"),
    ("PORT", "70000"),
    ("RAILWAY_PLAN", "platinum"),
    ("ACCESS_LOG", "verbose"),
    ("LOG_LEVEL", "loud"),
    ("SHUTDOWN_DELAY", "-1"),
    ("SHUTDOWN_DELAY", "soon"),
    ("REQUEST_TIMEOUT", "-5"),
    ("REQUEST_TIMEOUT", "forever"),
    ("WEB_CONCURRENCY", "257"),
    ("FORWARDED_ALLOW_IPS", "proxy.example.com"),
    ("FORWARDED_ALLOW_IPS", "*,10.0.0.1"),
    ("RATE_LIMIT_IPV6_PREFIX", "/8"),
    ("RATE_LIMIT_IPV6_PREFIX", "wide"),
    ("METRICS_TOKEN", "short"),
    ("SENTRY_DSN", "not a dsn"),
    ("SENTRY_DSN", "https://o1.ingest.sentry.io/123"),
    ("SENTRY_TRACES_SAMPLE_RATE", "often"),
    ("SENTRY_TRACES_SAMPLE_RATE", "1.5"),
]


@pytest.mark.parametrize(("variable", "value"), BAD_VALUES, ids=[f"{v}={x!r}" for v, x in BAD_VALUES])
def test_nonsense_values_are_refused_by_name(variable, value):
    with pytest.raises(SettingError) as refused:
        Settings.from_env({variable: value})
    assert refused.value.variable == variable
    assert variable in str(refused.value)


def test_clustering_off_with_many_workers_is_a_contradiction():
    with pytest.raises(SettingError, match="ENABLE_CLUSTERING=false"):
        Settings.from_env({"ENABLE_CLUSTERING": "false", "WEB_CONCURRENCY": "4"})


def _start(command, variable, value):
    env = {"PATH": "/usr/bin:/bin", variable: value}
    return subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60)


# Two refusals prove the start command's wiring; every value is refused in-process above.
WIRING = [("WEB_CONCURRENCY", "lots"), ("REDIS_URL", "http://example.com")]


@pytest.mark.parametrize(("variable", "value"), WIRING, ids=[f"{v}={x!r}" for v, x in WIRING])
def test_start_command_refuses_with_one_json_line(variable, value):
    """The start command railway.ts declares stops before gunicorn sees the value."""
    result = _start([*CLUSTER_COMMAND, "serve"], variable, value)
    assert result.returncode == EXIT_BAD_CONFIG
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout + result.stderr
    line = json.loads(lines[0])
    assert line["level"] == "error"
    assert line["variable"] == variable
    assert variable in line["message"]
    assert result.stderr == ""


def test_plain_gunicorn_refuses_through_its_config_file():
    """`gunicorn main:app` (Railpack's default start) refuses the same way."""
    result = _start([sys.executable, "-m", "gunicorn", "main:app"], "ENABLE_CLUSTERING", "perhaps")
    assert result.returncode == EXIT_BAD_CONFIG
    [line] = result.stdout.splitlines()
    assert json.loads(line)["variable"] == "ENABLE_CLUSTERING"


@pytest.mark.parametrize(
    ("variable", "value"),
    [("PORT", "99999"), ("WORKER_MAX_MEMORY_MB", "10"), ("WEB_CONCURRENCY", "0"), ("SENTRY_TRACES_SAMPLE_RATE", "2")],
)
def test_numbers_out_of_range_say_so(variable, value):
    with pytest.raises(SettingError, match="is out of range"):
        Settings.from_env({variable: value})


def test_words_where_numbers_belong_are_not_numbers():
    with pytest.raises(SettingError, match="is not a whole number"):
        Settings.from_env({"PORT": "eighty"})


@pytest.mark.parametrize("word", ["off", "OFF", "0", "none"])
def test_rate_limit_off_turns_limiting_off(word):
    assert Settings.from_env({"RATE_LIMIT": word}).rate_limit is None


def test_forwarded_allow_ips_has_gunicorns_meaning_and_default():
    assert Settings.from_env({}).forwarded_allow_ips == ("127.0.0.1", "::1")
    assert Settings.from_env({"FORWARDED_ALLOW_IPS": "10.0.0.0/8, 192.168.1.1"}).forwarded_allow_ips == (
        "10.0.0.0/8",
        "192.168.1.1",
    )
    assert Settings.from_env({"FORWARDED_ALLOW_IPS": "*"}).forwarded_allow_ips == ("*",)


def test_on_railway_the_edge_is_trusted_unless_told_otherwise():
    """gunicorn reads the scheme from any peer; the app believes the edge's marks, not its peers (security.py)."""
    railway = {"RAILWAY_ENVIRONMENT_NAME": "production"}
    assert Settings.from_env(railway).forwarded_allow_ips == ("*",)
    assert Settings.from_env(railway).railway_edge
    told = Settings.from_env({**railway, "FORWARDED_ALLOW_IPS": "127.0.0.1"})
    assert told.forwarded_allow_ips == ("127.0.0.1",) and not told.railway_edge
    assert not Settings.from_env({**railway, "FORWARDED_ALLOW_IPS": "*"}).railway_edge, "an explicit * is obeyed"
    assert not Settings.from_env({}).railway_edge


def test_observability_variables():
    settings = Settings.from_env(
        {
            "METRICS_TOKEN": "s3cret-token-of-length",
            "SENTRY_DSN": "https://abc123@o1.ingest.sentry.io/4500",
            "SENTRY_TRACES_SAMPLE_RATE": "0.25",
        }
    )
    assert settings.metrics_token == "s3cret-token-of-length"
    assert settings.sentry_dsn == "https://abc123@o1.ingest.sentry.io/4500"
    assert settings.sentry_traces_sample_rate == 0.25
    defaults = Settings.from_env({})
    assert (defaults.metrics_token, defaults.sentry_dsn, defaults.sentry_traces_sample_rate) == (None, None, 0.0)


def test_a_refused_token_is_not_written_to_the_log():
    with pytest.raises(SettingError) as refused:
        Settings.from_env({"METRICS_TOKEN": "tiny secret"})
    assert "tiny secret" not in str(refused.value)
