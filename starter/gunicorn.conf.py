"""gunicorn reads this file on every start, so `gunicorn main:app` runs the whole cluster.

Every value is decided in my_service.cluster; this file only assigns them.
"""

from my_service.cluster import limits, metrics, runtime
from my_service.cluster.hooks import ClusterHooks
from my_service.cluster.network import listen_addresses
from my_service.cluster.sizing import size_cluster
from my_service.settings import load_settings_or_exit

settings = load_settings_or_exit()
size = size_cluster(settings)
cluster = ClusterHooks(settings, size)

# Server socket
bind = listen_addresses(settings.port)
backlog = limits.BACKLOG

# Worker processes
# gunicorn's own worker class, with deadlines on reading requests (cluster/workers/).
worker_class = f"my_service.cluster.workers.{settings.worker_class.title()}Worker"
workers = size.workers
threads = size.threads
worker_connections = limits.WORKER_CONNECTIONS
max_requests = limits.MAX_REQUESTS
max_requests_jitter = limits.MAX_REQUESTS_JITTER
timeout = limits.heartbeat_timeout(settings.worker_class, settings.request_timeout)
graceful_timeout = settings.graceful_timeout
keepalive = limits.KEEPALIVE
worker_tmp_dir = limits.heartbeat_dir()
# Load the app once in the master so workers share its memory (see cluster/preload.py).
preload_app = True

# Request limits
limit_request_line = limits.LIMIT_REQUEST_LINE
limit_request_fields = limits.LIMIT_REQUEST_FIELDS
limit_request_field_size = limits.LIMIT_REQUEST_FIELD_SIZE

# Observability: every process's Prometheus metrics in the master's private
# folder, exported before the app is loaded; forwarded headers trusted as the app trusts them.
raw_env = metrics.multiprocess_env(runtime.instance_folder(settings.port))
forwarded_allow_ips = ",".join(settings.forwarded_allow_ips)

# Logging: JSON lines on stdout, gunicorn's included.
logger_class = "my_service.logs.GunicornLogger"
loglevel = settings.log_level

# gunicorn's control socket is one path for every server on a host, and it
# restarts its thread around every fork; the cluster's board serves instead.
control_socket_disable = True

# Server hooks
on_starting = cluster.on_starting
on_reload = cluster.on_reload
when_ready = cluster.when_ready
pre_fork = cluster.pre_fork
post_fork = cluster.post_fork
post_worker_init = cluster.post_worker_init
pre_request = cluster.pre_request
post_request = cluster.post_request
worker_abort = cluster.worker_abort
worker_exit = cluster.worker_exit
child_exit = cluster.child_exit
nworkers_changed = cluster.nworkers_changed
on_exit = cluster.on_exit
