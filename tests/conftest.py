"""The order `make test` runs the template's tests in: the longest first, so its workers (pytest-xdist)
finish together instead of one waiting on a test another started last. The Makefile's `--dist loadgroup
--no-loadscope-reorder` hands them out in this order, one at a time (a module marked `xdist_group` as one)."""

# Node-id fragments of the longest tests, longest first (each takes minutes).
LONGEST_FIRST = (
    "test_bench.py::test_smoke",
    "test_platform.py::",
)


def pytest_collection_modifyitems(items):
    def rank(item) -> int:
        ranks = (index for index, part in enumerate(LONGEST_FIRST) if part in item.nodeid)
        return next(ranks, len(LONGEST_FIRST))

    items.sort(key=rank)
