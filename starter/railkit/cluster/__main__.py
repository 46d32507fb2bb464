"""`python -m railkit.cluster serve|status`: start the cluster, or look at it.

`serve` is Railway's start command. It checks every variable before gunicorn
reads any (gunicorn parses WEB_CONCURRENCY on import and would crash with a
raw traceback), then runs gunicorn, which reads ./gunicorn.conf.py.
"""

import argparse
import json
import os
import sys

from .. import project
from ..settings import load_settings_or_exit
from .python_support import refuse_unsupported_python
from .runtime import find_live_board, live_ports
from .status import as_json, read_rows, render

# What sys.argv[0] says this process runs. gunicorn reads its arguments from
# sys.argv[1:], and its binary upgrade (SIGUSR2) runs `python <sys.argv...>`
# again: python's `-c` runs `serve` again with gunicorn's arguments after it.
REEXEC = "-cimport sys; from railkit.cluster.__main__ import serve; serve(sys.argv[1:])"


def serve(gunicorn_args: list[str]) -> None:
    refuse_unsupported_python()
    load_settings_or_exit()
    if project.SERVER == "granian":
        from ..granian.start import start

        start(gunicorn_args)
    # gunicorn runs in this process (no second interpreter to start).
    from gunicorn.app.wsgiapp import run

    sys.argv = [REEXEC, *(gunicorn_args or ["main:app"])]
    run(prog="gunicorn")


def status(port: int | None, as_machine_json: bool) -> int:
    """Show the cluster on `port`; without --port, on $PORT (8000), or the only one running if that is elsewhere."""
    asked = port if port is not None else int(os.environ.get("PORT") or "8000")
    board = find_live_board(asked)
    if board is None:
        running = live_ports()
        if port is None and len(running) == 1:
            board = find_live_board(running[0])
        if board is None:
            print(not_running(asked, running), file=sys.stderr)
            return 1
    rows = read_rows(board)
    print(json.dumps(as_json(board, rows)) if as_machine_json else render(board, rows))
    return 0


def not_running(port: int, running: list[int]) -> str:
    """What `status` says when nothing serves `port`: and where this project's clusters do run."""
    if not running:
        return f"not running: no live cluster on port {port}, nor on any other (of this user, in this container)"
    ports = ", ".join(str(other) for other in running)
    noun = "port" if len(running) == 1 else "ports"
    return f"not running: no live cluster on port {port}; running on {noun} {ports}: pass --port {running[0]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m railkit.cluster")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="check the environment, then start gunicorn")
    serve_parser.add_argument("gunicorn_args", nargs=argparse.REMAINDER, help="passed to gunicorn (default: main:app)")
    status_parser = commands.add_parser("status", help="show each worker's pid, uptime, requests, memory and CPU")
    status_parser.add_argument(
        "--port", type=int, default=None, help="the port the cluster serves (default: $PORT, else 8000, else the one)"
    )
    status_parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.command == "status" and args.port is None and not (os.environ.get("PORT") or "8000").isdigit():
        parser.error(f"PORT={os.environ['PORT']!r} is not a port: pass --port")
    if args.command == "serve":
        serve(args.gunicorn_args)
    return status(args.port, args.json)


if __name__ == "__main__":
    sys.exit(main())
