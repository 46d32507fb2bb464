"""`make test` runs several pytest processes side by side: its workers, and the platform suites they start.
A test marked `load` keeps the cores busy, and its checks count on having them: at most one such test per
core runs at a time, across every pytest process of the run, and the others wait for a slot before their
setup. A test marked `load(alone=True)` holds every slot: no other load test runs beside it, and none
starts while it waits for them. A load test must not start a pytest run of its own: an alone test in it
would wait forever on the slot its parent holds. The template's runner names the slots' folder in
RAILKIT_TEST_LOAD_SLOTS; without it (a suite run by hand), every test runs as it comes.
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
    config.addinivalue_line(
        "markers", "load(alone=False): keeps the machine's cores busy; one such test per core at once, or it alone"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    marker = item.get_closest_marker("load")
    if marker is None:
        return (yield)
    with every_load_slot() if marker.kwargs.get("alone") else load_slot():
        return (yield)


def _slots(folder: str) -> list[Path]:
    return [Path(folder) / f"slot-{index}" for index in range(len(os.sched_getaffinity(0)))]


def _open(path: Path) -> int:
    return os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)


def _gate_is_open(folder: str) -> bool:
    """False while an alone test holds the gate: a freed slot is then its, not the next poller's."""
    descriptor = _open(Path(folder) / "gate")
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(descriptor)
    return True


@contextmanager
def load_slot():
    """Hold one of the run's slots (one per core) while the block runs; wait for one if all are taken."""
    folder = os.environ.get(SLOTS_FOLDER)
    if not folder:
        yield
        return
    slots = _slots(folder)
    while True:
        for slot in slots if _gate_is_open(folder) else ():
            descriptor = _open(slot)
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


@contextmanager
def every_load_slot():
    """Hold all the run's slots while the block runs: close the gate to new holders, then take each as it is freed."""
    folder = os.environ.get(SLOTS_FOLDER)
    if not folder:
        yield
        return
    descriptors = []
    try:
        for lock in [Path(folder) / "gate", *_slots(folder)]:
            descriptors.append(_open(lock))
            fcntl.flock(descriptors[-1], fcntl.LOCK_EX)
        yield
    finally:
        for descriptor in descriptors:
            os.close(descriptor)
