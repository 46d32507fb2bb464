"""Run the platform's suite, or part of it, on a freshly rendered project: the template developer's loop.

    python -m tests.platform [answer=value ...] [-- pytest arguments]
    make platform-test ANSWERS="worker_class=gevent database=postgres" ARGS="-k redis test_ratelimit.py"

The project is rendered under build/platform/ with the given cookiecutter answers (the defaults
otherwise), its locked venv is the one `make test` caches, and the suite runs from its root
(support.run_platform_tests). Paths in the pytest arguments that name a suite file may be given
relative to railkit/railkit_tests.
"""

import shutil
import sys
from pathlib import Path

from cookiecutter.main import cookiecutter

from .support import PLATFORM_SUITE, ROOT, run_platform_tests

BUILD = ROOT / "build" / "platform"


def main(argv: list[str]) -> int:
    split = argv.index("--") if "--" in argv else len(argv)
    answers, pytest_args = argv[:split], argv[split + 1 :]
    context = dict(answer.split("=", 1) for answer in answers)
    shutil.rmtree(BUILD, ignore_errors=True)
    project = cookiecutter(str(ROOT), no_input=True, extra_context=context, output_dir=str(BUILD))
    suite_files = {path.name for path in PLATFORM_SUITE.glob("test_*.py")}
    pytest_args = [str(PLATFORM_SUITE / arg) if arg.split("::")[0] in suite_files else arg for arg in pytest_args]
    outcome = run_platform_tests(Path(project), *pytest_args)
    print(outcome.stdout, end="")
    print(outcome.stderr, end="", file=sys.stderr)
    return outcome.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
