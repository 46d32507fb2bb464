"""In CI a skipped test fails: what it needs (redis-server, nginx, prometheus) must be installed there.

Loaded by the template's runner (tests/support.py); active only when CI is set, as GitHub Actions sets it.
"""

import os

import pytest


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every test must run: {report.longrepr}"
    return report
