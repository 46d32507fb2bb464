"""`python -m railkit.cluster serve|status`: start the cluster, or look at it.

`serve` is Railway's start command. It checks every variable before gunicorn
reads any (gunicorn parses WEB_CONCURRENCY on import and would crash with a
raw traceback), then runs gunicorn, which reads ./gunicorn.conf.py.
"""

import argparse
import json
import os
import sys

from ..settings import load_settings_or_exit
from .runtime import find_live_board
from .status import as_json, read_rows, render


def serve(gunicorn_args: list[str]) -> None:
    load_settings_or_exit()
    # gunicorn runs in this process (no second interpreter to start), and
    # reads its arguments, like its own entry point, from sys.argv.
    from gunicorn.app.wsgiapp import run

    sys.argv = ["gunicorn", *(gunicorn_args or ["main:app"])]
    run(prog="gunicorn")


def status(port: int, as_machine_json: bool) -> int:
    board = find_live_board(port)
    if board is None:
        print(f"not running: no live cluster on port {port}", file=sys.stderr)
        return 1
    rows = read_rows(board)
    print(json.dumps(as_json(board, rows)) if as_machine_json else render(board, rows))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m railkit.cluster")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="check the environment, then start gunicorn")
    serve_parser.add_argument("gunicorn_args", nargs=argparse.REMAINDER, help="passed to gunicorn (default: main:app)")
    status_parser = commands.add_parser("status", help="show each worker's pid, uptime, requests, memory and CPU")
    status_parser.add_argument("--port", type=int, default=os.environ.get("PORT", "8000"))
    status_parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.gunicorn_args)
    return status(args.port, args.json)


if __name__ == "__main__":
    sys.exit(main())
