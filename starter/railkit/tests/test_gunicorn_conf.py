"""gunicorn.conf.py, loaded the way gunicorn loads it, holds the cluster's settings."""

import runpy

import pytest
from gunicorn.config import Config

from railkit import project
from railkit.cluster import hooks, limits

from .servers import PROJECT_ROOT

HOOKS = ("on_starting", "when_ready", "pre_fork", "post_fork", "post_worker_init", "child_exit", "worker_abort")


# Cleared before each load, so the machine's own environment cannot leak in.
VARIABLES = ("WEB_CONCURRENCY", "ENABLE_CLUSTERING", "RAILWAY_PLAN", "PORT", "GRACEFUL_TIMEOUT", "REQUEST_TIMEOUT")


@pytest.fixture
def load_conf(monkeypatch):
    def load(**env):
        for name in VARIABLES:
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
    assert config.worker_class_str.endswith(f".{project.WORKER_CLASS.title()}Worker")
    assert config.preload_app is True
    assert config.timeout == limits.heartbeat_timeout(project.WORKER_CLASS, 30)
    assert config.logger_class.__name__ == "ClusterLogger"
    assert config.control_socket_disable
    # The hooks are the platform's once gunicorn's logger is set up from this configuration.
    config.logger_class(config)
    for hook in HOOKS:
        assert getattr(getattr(config, hook), "__self__", None) is hooks._prepared, hook
