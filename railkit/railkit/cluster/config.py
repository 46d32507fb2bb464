"""Every gunicorn setting of the cluster, decided from the environment; gunicorn.conf.py takes them all.

gunicorn.conf.py runs `globals().update(gunicorn_settings())` on every start and
on every reload (SIGHUP), so a reload re-reads the environment. The server
hooks are not among these settings: the cluster's logger puts them in place
once gunicorn has read the whole file (hooks.install_platform_hooks), so a hook
the owner defines there runs beside the platform's instead of replacing it.
"""

from ..settings import load_settings_or_exit
from . import hooks, limits, metrics, runtime
from .network import listen_addresses
from .python_support import preload_error_reporting, refuse_unsupported_python
from .sizing import size_cluster

__all__ = ["gunicorn_settings"]


def gunicorn_settings() -> dict:
    """gunicorn's settings for this container, by gunicorn's names."""
    refuse_unsupported_python()
    preload_error_reporting()
    settings = load_settings_or_exit()
    size = size_cluster(settings)
    hooks.prepare(settings, size)
    return {
        # Server socket: [::] and 0.0.0.0 on PORT, as Railway's private network needs.
        "bind": listen_addresses(settings.port),
        "backlog": limits.BACKLOG,
        # Worker processes: gunicorn's worker classes with deadlines on reading requests (workers/).
        "worker_class": f"railkit.cluster.workers.{settings.worker_class.title()}Worker",
        "workers": size.workers,
        "threads": size.threads,
        "worker_connections": limits.WORKER_CONNECTIONS,
        "max_requests": limits.MAX_REQUESTS,
        "max_requests_jitter": limits.MAX_REQUESTS_JITTER,
        "timeout": limits.heartbeat_timeout(settings.worker_class, settings.request_timeout),
        "graceful_timeout": settings.graceful_timeout,
        "keepalive": limits.KEEPALIVE,
        "worker_tmp_dir": limits.heartbeat_dir(),
        # Load the app once in the master so workers share its memory (preload.py).
        "preload_app": True,
        # Request limits
        "limit_request_line": limits.LIMIT_REQUEST_LINE,
        "limit_request_fields": limits.LIMIT_REQUEST_FIELDS,
        "limit_request_field_size": limits.LIMIT_REQUEST_FIELD_SIZE,
        # Observability: every process's Prometheus metrics in the master's private folder,
        # exported before the app is loaded; forwarded headers trusted as the app trusts them.
        "raw_env": metrics.multiprocess_env(runtime.instance_folder(settings.port)),
        "forwarded_allow_ips": ",".join(settings.forwarded_allow_ips),
        # Logging: JSON lines on stdout, gunicorn's included; the logger also installs the hooks.
        "logger_class": "railkit.cluster.logger.ClusterLogger",
        "loglevel": settings.log_level,
        # gunicorn's control socket is one path for every server on a host, and it
        # restarts its thread around every fork; the cluster's board serves instead.
        "control_socket_disable": True,
    }
