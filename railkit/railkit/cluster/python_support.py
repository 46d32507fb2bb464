"""The Pythons the cluster refuses to start on (one line naming each and the fix), and what it imports early.

- 3.14.0 to 3.14.4 shipped an incremental garbage collector that 3.14.5 reverted (python/cpython#142516)
  because of its memory pressure in production: a cluster whose workers are replaced at a memory limit
  does not run on it. 3.15 and later do not have it.
- Free-threaded builds (3.14t, 3.15t): orjson and gevent publish no free-threaded wheels, so the locks
  install there only by compiling them (which Railpack's image cannot), and a module compiled without
  free-threading support turns the GIL back on when imported: the build would gain nothing, untested.
"""

import io
import logging
import sys
import sysconfig
import traceback
from collections.abc import Sequence

from ..settings import EXIT_BAD_CONFIG

# The releases with the incremental collector, first and last.
INCREMENTAL_GC_RELEASES = ((3, 14, 0), (3, 14, 4))
FIXED_RELEASE = "3.14.5"


def unsupported_python(version_info: Sequence = sys.version_info, gil_disabled: bool | None = None) -> str | None:
    """Why this interpreter cannot run the cluster, with the fix; None when it can."""
    release = tuple(version_info[:3])
    version = ".".join(str(part) for part in release)
    first, last = INCREMENTAL_GC_RELEASES
    if first <= release <= last:
        return (
            f"Python {version} has the incremental garbage collector that {FIXED_RELEASE} reverted for its memory "
            f"pressure in production: use Python {FIXED_RELEASE} or newer (`3.14` in .python-version takes "
            "the newest 3.14)"
        )
    if gil_disabled is None:
        gil_disabled = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    if gil_disabled:
        return (
            f"Python {version} is a free-threaded build, which orjson and gevent publish no wheels for: "
            f"use the standard build of Python {version[: version.rindex('.')]}"
        )
    return None


def refuse_unsupported_python(version_info: Sequence = sys.version_info, gil_disabled: bool | None = None) -> None:
    """Return when this interpreter can run the cluster; otherwise log one JSON line naming it and exit 78."""
    problem = unsupported_python(version_info, gil_disabled)
    if problem is None:
        return
    # The same one-line refusal as a bad variable's (settings.load_settings_or_exit).
    from ..logs import configure_logging

    configure_logging("info")
    version = ".".join(str(part) for part in tuple(version_info[:3]))
    logging.getLogger(__name__).error("Refusing to start: %s", problem, extra={"python": version})
    sys.exit(EXIT_BAD_CONFIG)


def preload_error_reporting() -> None:
    """Print one traceback, to nowhere, so that the modules printing one needs are imported before fork.

    3.15's traceback imports _colorize on first use: a worker out of file descriptors cannot open it,
    and gevent's server, whose error report then fails, stops accepting for good.
    """
    try:
        raise RuntimeError("warming up traceback printing")
    except RuntimeError as error:
        traceback.print_exception(error, file=io.StringIO())
