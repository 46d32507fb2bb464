"""gunicorn's logger for the cluster: JSON lines on stdout, and where the platform's server hooks go in.

gunicorn builds its logger from the configuration before it runs any hook, on
every start and again on every reload, after it has read the whole of
gunicorn.conf.py. That makes it the one place that sees the owner's hooks,
wherever in the file they are defined, before any of them runs.
"""

from gunicorn.glogging import Logger

from ..logs import configure_logging
from .hooks import install_platform_hooks


class ClusterLogger(Logger):
    """gunicorn's logger, writing JSON to stdout like every other logger.

    gunicorn's own access log stays off: the app logs requests itself, with
    their request id and within Railway's line rate.
    """

    def setup(self, cfg):
        super().setup(cfg)
        configure_logging(cfg.loglevel)
        install_platform_hooks(cfg)
