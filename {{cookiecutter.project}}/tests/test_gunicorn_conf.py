"""gunicorn.conf.py, loaded the way gunicorn loads it, holds the cluster's settings."""

import runpy

import pytest
from gunicorn.config import Config

from .servers import PROJECT_ROOT

HOOKS = ("on_starting", "when_ready", "pre_fork", "post_fork", "post_worker_init", "child_exit", "worker_abort")


@pytest.fixture
def load_conf(monkeypatch):
    def load(**env):
        for name in ("WEB_CONCURRENCY", "ENABLE_CLUSTERING", "RAILWAY_PLAN", "PORT", "GRACEFUL_TIMEOUT"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return runpy.run_path(str(PROJECT_ROOT / "gunicorn.conf.py"))

    return load


def test_every_value_is_a_valid_gunicorn_setting(load_conf):
    conf = load_conf(WEB_CONCURRENCY="3", PORT="9001", GRACEFUL_TIMEOUT="12")
    config = Config()
    for name, value in conf.items():
        if name in config.settings:
            config.set(name, value)
    assert config.workers == 3
    assert config.graceful_timeout == 12
    assert any(address.endswith(":9001") for address in config.bind)
    assert config.preload_app is ("gevent" not in config.worker_class_str.lower())
    assert config.accesslog is None
    assert config.control_socket_disable
    for hook in HOOKS:
        assert getattr(config, hook).__self__ is conf["cluster"], hook


def test_single_process_mode(load_conf):
    assert load_conf(ENABLE_CLUSTERING="false")["workers"] == 1


def test_bad_value_exits_while_loading(load_conf):
    with pytest.raises(SystemExit) as stopped:
        load_conf(GRACEFUL_TIMEOUT="forever")
    assert stopped.value.code != 0
