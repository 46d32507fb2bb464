"""The Pythons the cluster refuses: 3.14.0 to 3.14.4 and free-threaded builds, never 3.15 or later."""

import json
import subprocess
import sys

import pytest

from railkit.cluster.python_support import unsupported_python
from railkit.settings import EXIT_BAD_CONFIG

from .servers import PROJECT_ROOT

REFUSED = [(3, 14, 0, "alpha", 1), (3, 14, 0, "final", 0), (3, 14, 3, "final", 0), (3, 14, 4, "final", 0)]
ACCEPTED = [
    (3, 11, 7, "final", 0),
    (3, 13, 9, "final", 0),
    (3, 14, 5, "final", 0),
    (3, 14, 8, "final", 0),
    (3, 15, 0, "alpha", 1),
    (3, 15, 0, "final", 0),
    (3, 16, 2, "final", 0),
]


def _id(version_info: tuple) -> str:
    return ".".join(str(part) for part in version_info[:3]) + ("" if version_info[3] == "final" else version_info[3])


@pytest.mark.parametrize("version_info", REFUSED, ids=_id)
def test_incremental_collector_releases_are_refused_with_the_fix(version_info):
    problem = unsupported_python(version_info, gil_disabled=False)
    assert problem is not None
    assert f"Python {'.'.join(map(str, version_info[:3]))} " in problem
    assert "3.14.5 or newer" in problem


@pytest.mark.parametrize("version_info", ACCEPTED, ids=_id)
def test_other_releases_start(version_info):
    assert unsupported_python(version_info, gil_disabled=False) is None


@pytest.mark.parametrize("version_info", [(3, 14, 8, "final", 0), (3, 15, 0, "final", 0)], ids=_id)
def test_free_threaded_builds_are_refused_with_the_fix(version_info):
    problem = unsupported_python(version_info, gil_disabled=True)
    assert problem is not None and "free-threaded" in problem
    assert f"standard build of Python {version_info[0]}.{version_info[1]}" in problem


def test_this_interpreter_is_read_when_nothing_is_given():
    """The suite runs on interpreters the cluster accepts, read from sys.version_info and sysconfig."""
    assert unsupported_python() is None


def _refuse(version_info: tuple) -> subprocess.CompletedProcess:
    code = (
        "from railkit.cluster.python_support import refuse_unsupported_python\n"
        f"refuse_unsupported_python({version_info!r}, gil_disabled=False)\n"
        "print('started')\n"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)


def test_refusal_is_one_json_line_and_exit_78():
    result = _refuse((3, 14, 2, "final", 0))
    assert result.returncode == EXIT_BAD_CONFIG, result.stdout + result.stderr
    [line] = result.stdout.splitlines()
    record = json.loads(line)
    assert record["level"] == "error"
    assert record["python"] == "3.14.2"
    assert "Python 3.14.2" in record["message"] and "3.14.5 or newer" in record["message"]
    assert result.stderr == ""


def test_accepted_python_goes_on_silently():
    result = _refuse((3, 15, 0, "final", 0))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "started\n"


# A process that ran out of file descriptors, then prints a traceback (as gevent's hub does when accept() fails).
OUT_OF_DESCRIPTORS = """
import resource, traceback
from railkit.cluster import python_support
{preload}
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
held = []
try:
    while True:
        held.append(open("/dev/null", "rb"))
except OSError as error:
    traceback.print_exception(error)
"""


def test_a_process_out_of_descriptors_can_still_print_a_traceback():
    """No module printing one needs is left to import then: 3.15's traceback imports _colorize on first use."""
    code = OUT_OF_DESCRIPTORS.format(preload="python_support.preload_error_reporting()")
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "OSError: [Errno 24] Too many open files" in result.stderr
