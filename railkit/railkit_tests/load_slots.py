"""`make test` runs several pytest processes side by side: its workers, and the platform suites they start.
A test marked `load` keeps the cores busy, and its checks count on having them: at most one such test per
core runs at a time, across every pytest process of the run, and the others wait for a slot before their
setup. The template's runner names the slots' folder in RAILKIT_TEST_LOAD_SLOTS; without it (a suite run
by hand), every test runs as it comes.
"""

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

SLOTS_FOLDER = "RAILKIT_TEST_LOAD_SLOTS"
# How often a test waiting for a slot tries them all again.
RETRY_SECONDS = 0.1


def pytest_configure(config):
    config.addinivalue_line("markers", "load: keeps the machine's cores busy; one such test per core at once")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if item.get_closest_marker("load") is None:
        return (yield)
    with load_slot():
        return (yield)


@contextmanager
def load_slot():
    """Hold one of the run's slots (one per core) while the block runs; wait for one if all are taken."""
    folder = os.environ.get(SLOTS_FOLDER)
    if not folder:
        yield
        return
    slots = [Path(folder) / f"slot-{index}" for index in range(len(os.sched_getaffinity(0)))]
    while True:
        for slot in slots:
            descriptor = os.open(slot, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(descriptor)
                continue
            try:
                yield
            finally:
                os.close(descriptor)  # releases the lock
            return
        time.sleep(RETRY_SECONDS)
