"""`--shard K/N` runs the K-th of N equal shares of the suite, so the template's CI can spread them over its workers.

Tests are dealt round-robin in collection order, which spreads a module's tests, and the
parameters of one test, over every shard, so the shares take about as long as each other.
"""

import pytest


def pytest_addoption(parser):
    parser.addoption("--shard", default="1/1", help="K/N: run the K-th of N shares of the collected tests")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    shard, _, shards = config.getoption("shard").partition("/")
    try:
        index, count = int(shard), int(shards)
    except ValueError:
        raise pytest.UsageError(f"--shard takes K/N, e.g. 2/3, not {config.getoption('shard')!r}") from None
    if not 1 <= index <= count:
        raise pytest.UsageError(f"--shard {index}/{count}: K must be between 1 and N")
    kept = items[index - 1 :: count]
    other = [item for position, item in enumerate(items) if position % count != index - 1]
    if other:
        config.hook.pytest_deselected(items=other)
        items[:] = kept
