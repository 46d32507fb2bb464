"""gunicorn reads this file on every start, so `gunicorn main:app` (or any WSGI app) runs the whole cluster.

The platform (railkit) decides every setting from the environment. Your stuff
goes below it: assign a gunicorn setting to override the platform's, or define
a server hook (e.g. `def post_fork(server, worker): ...` to open a pool per
worker). The platform's hooks run first and yours after them; yours never
replace them.
"""
{%- if cookiecutter.worker_class == "gevent" %}

# ruff: noqa: E402 (gevent's patch has to run before the imports below)

# gevent must patch the standard library before anything imports it. Patched
# here, the master can load the app once and every worker shares it (preload_app).
# The master keeps the real fork, waitpid and signals: patched, it could miss
# a worker's death. Each worker patches those too once forked (gunicorn's gevent worker).
from gevent import monkey

monkey.patch_all(os=False, signal=False)
{%- endif %}

from railkit.cluster.config import gunicorn_settings

globals().update(gunicorn_settings())

# Your stuff: gunicorn settings and server hooks.
