"""The project's gunicorn.conf.py with a 2-second write deadline, for the test of that deadline (gunicorn -c)."""

from pathlib import Path

from railkit.cluster import limits

limits.WRITE_STALL_SECONDS = 2
exec(Path("gunicorn.conf.py").read_text())
