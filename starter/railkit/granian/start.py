"""`python -m railkit.cluster serve` in a project generated with server=granian: granian installed, then served."""

import importlib.util
import logging
import sys
from typing import NoReturn

from ..settings import EXIT_BAD_CONFIG


def start(args: list[str]) -> NoReturn:
    """Serve with granian; one JSON line and exit 78 when it is not installed (the project's lock installs it)."""
    if importlib.util.find_spec("granian") is None:
        from ..logs import configure_logging

        configure_logging("info")
        logging.getLogger(__name__).error(
            "Refusing to start: railkit.json says server=granian, and granian is not installed: "
            "pip install --require-hashes -r requirements.txt",
            extra={"server": "granian"},
        )
        sys.exit(EXIT_BAD_CONFIG)
    from .serve import serve

    serve(args)
