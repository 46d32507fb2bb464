"""`python -m railkit.db migrate`: see migrate.py."""

import sys

from .migrate import main

sys.exit(main(sys.argv[1:]))
