"""A private redis-server for the rate limit's tests, and what it says about its clients."""

import os
import shutil
import subprocess

import pytest

from .servers import free_port, wait_until

needs_redis = pytest.mark.skipif(
    shutil.which("redis-server") is None,
    reason="needs redis-server on PATH: install it (e.g. `sudo apt-get install redis-server`), as CI does",
)


def start_redis(folder, *options: str) -> tuple[int, subprocess.Popen]:
    """A redis-server on a free loopback port, with `options` (e.g. --requirepass): (its port, its process)."""
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", *options],
        cwd=folder,
        stdout=subprocess.DEVNULL,
    )
    if os.geteuid() == 0:
        # On Railway, Redis is a service of its own with its own cores: here it shares two with the whole suite,
        # and a stall of half a second (the cluster's Redis deadline) would read as an outage.
        os.setpriority(os.PRIO_PROCESS, process.pid, -10)
    ping = ["redis-cli", "-p", str(port), "ping"]
    wait_until(lambda: subprocess.run(ping, capture_output=True, text=True).stdout.startswith(("PONG", "NOAUTH")))
    return port, process


def redis_cli(port: int, *command: str) -> list[str]:
    """The lines redis-cli prints for `command`."""
    return subprocess.run(["redis-cli", "-p", str(port), *command], capture_output=True, text=True).stdout.split()


def redis_clients(port: int) -> int:
    """Connections the server holds, but the one asking."""
    listed = subprocess.run(["redis-cli", "-p", str(port), "client", "list"], capture_output=True, text=True).stdout
    return len([line for line in listed.splitlines() if line and "cmd=client|list" not in line])


def running_redis(folder):
    """For a fixture: a redis-server on a free loopback port, (its URL, its process), stopped afterwards."""
    port, process = start_redis(folder)
    yield f"redis://127.0.0.1:{port}/0", process
    process.kill()
    process.wait()
