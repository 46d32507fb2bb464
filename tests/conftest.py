"""The order `make test` runs the template's tests in: the longest first, so its two workers
(pytest-xdist, `-n 2`) finish together instead of one waiting on a suite the other started last."""

# Node-id fragments of the longest tests, longest first (each platform suite takes minutes).
LONGEST_FIRST = (
    "test_platform.py::test_the_platform_suite_passes_on[gevent-postgres]",
    "test_platform.py::test_the_platform_suite_passes_on[gthread]",
    "test_platform.py::",
    "test_bench.py::test_smoke",
    "test_make.py::test_make_run",
)


def pytest_collection_modifyitems(items):
    def rank(item) -> int:
        ranks = (index for index, part in enumerate(LONGEST_FIRST) if part in item.nodeid)
        return next(ranks, len(LONGEST_FIRST))

    items.sort(key=rank)
