"""The order `make test` runs the template's tests in: the longest first, so its workers (pytest-xdist)
finish together instead of one waiting on a test another started last. The Makefile's `--dist loadgroup
--no-loadscope-reorder` hands them out in this order, one at a time (a module marked `xdist_group` as one).

The run's tests marked `load`, the platform suites' and the template's own, share one slot per core
(railkit_tests/load_slots.py): the folder of their locks is made here, before the workers start."""

import importlib.util
import os

from .support import PLATFORM_SUITE, ROOT

# Node-id fragments of the longest tests, longest first (each takes minutes). The locks' group mostly waits on
# uv and the index, so it runs beside the platform suites, not after them; Railway's group (a minute, one test
# after another on one worker) starts before them too: last, it ended the run alone.
LONGEST_FIRST = (
    "test_bench.py::test_smoke",
    "test_locks.py::",
    "test_railway.py::",
    "test_platform.py::",
)


def pytest_collection_modifyitems(items):
    def rank(item) -> int:
        ranks = (index for index, part in enumerate(LONGEST_FIRST) if part in item.nodeid)
        return next(ranks, len(LONGEST_FIRST))

    items.sort(key=rank)


def pytest_configure(config):
    # Every process the tests start inherits it: one that may not write bytecode compiles what it imports again
    # (the Makefile unexports it; this is for pytest run by hand).
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    spec = importlib.util.spec_from_file_location("load_slots", PLATFORM_SUITE / "load_slots.py")
    load_slots = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(load_slots)
    config.pluginmanager.register(load_slots, "load_slots")
    if not hasattr(config, "workerinput") and not os.environ.get(load_slots.SLOTS_FOLDER):
        folder = ROOT / "build" / "load-slots"
        folder.mkdir(parents=True, exist_ok=True)
        os.environ[load_slots.SLOTS_FOLDER] = str(folder)
