"""gunicorn.conf.py, loaded the way gunicorn loads it, holds the cluster's settings."""

import runpy

import pytest
from gunicorn.config import Config
from gunicorn.glogging import Logger

from railkit import project
from railkit.cluster import hooks, limits

from .servers import PROJECT_ROOT

# An owner's hooks in the file's "Your stuff" section, as gunicorn's documentation writes them.
OWNER_HOOKS = """

def post_fork(server, worker):
    server.log.info("owner's post_fork")


def when_ready(server):
    server.log.info("owner's when_ready")
"""


# Cleared before each load, so the machine's own environment cannot leak in.
VARIABLES = ("WEB_CONCURRENCY", "ENABLE_CLUSTERING", "RAILWAY_PLAN", "PORT", "GRACEFUL_TIMEOUT", "REQUEST_TIMEOUT")


@pytest.fixture
def load_conf(monkeypatch, tmp_path):
    def load(owner: str = "", **env):
        for name in VARIABLES:
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        conf = tmp_path / "gunicorn.conf.py"
        conf.write_text((PROJECT_ROOT / "gunicorn.conf.py").read_text() + owner)
        return runpy.run_path(str(conf))

    return load


def _config(conf: dict) -> Config:
    config = Config()
    for name, value in conf.items():
        if name in config.settings:
            config.set(name, value)
    return config


def _platform_part(config: Config, name: str):
    """The platform's method that gunicorn's `name` hook runs, alone or first before the owner's; else None."""
    installed = getattr(config, name)
    platform = getattr(installed, "platform", installed)
    ours = getattr(platform, "__self__", None) is hooks._prepared
    return platform if ours and platform.__func__ is getattr(hooks.ClusterHooks, name) else None


@pytest.mark.parametrize("owner", ["", OWNER_HOOKS], ids=["platform only", "with the owner's hooks"])
def test_every_value_is_a_valid_gunicorn_setting(load_conf, owner):
    conf = load_conf(owner, WEB_CONCURRENCY="3", PORT="9001", GRACEFUL_TIMEOUT="12")
    config = _config(conf)
    assert config.workers == 3
    assert config.graceful_timeout == 12
    assert any(address.endswith(":9001") for address in config.bind)
    assert config.worker_class_str.endswith(f".{project.WORKER_CLASS.title()}Worker")
    assert config.preload_app is True
    assert config.timeout == limits.heartbeat_timeout(project.WORKER_CLASS, 30)
    assert config.logger_class.__name__ == "ClusterLogger"
    assert config.control_socket_disable
    # Every hook runs the platform's once gunicorn's logger is set up from this configuration,
    # and the owner's hooks run after it, never instead of it.
    config.logger_class(config)
    for hook in hooks.PLATFORM_HOOKS:
        assert _platform_part(config, hook), hook
    if owner:
        assert config.post_fork.__wrapped__ is conf["post_fork"]
        assert config.when_ready.__wrapped__ is conf["when_ready"]


def test_an_owners_hook_without_the_platforms_is_told_apart(load_conf):
    """The check above fails when the owner's hook replaced the platform's (a logger that installs nothing)."""
    conf = load_conf(OWNER_HOOKS)
    config = _config(conf)
    Logger(config)
    assert config.post_fork is conf["post_fork"]
    assert _platform_part(config, "post_fork") is None
    assert _platform_part(config, "on_starting") is None
