"""gunicorn reads this file on every start, so `gunicorn main:app` (or any WSGI app) runs the whole cluster.

The platform (railkit) decides every setting from the environment. Your stuff
goes below it: assign a gunicorn setting to override the platform's, or define
a server hook (e.g. `def post_fork(server, worker): ...` to open a pool per
worker). The platform's hooks run first and yours after them; yours never
replace them.
"""

from railkit.cluster.config import gunicorn_settings

globals().update(gunicorn_settings())

# Your stuff: gunicorn settings and server hooks.
