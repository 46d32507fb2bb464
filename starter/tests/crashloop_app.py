"""An app whose every worker dies as soon as it is forked: a crash loop."""

import os

from my_service import create_app

app = create_app()
os.register_at_fork(after_in_child=lambda: os._exit(1))
