"""A redeploy through a real proxy (issue 14): requests lost while traffic moves to a new deployment.

The edge is two nginx. `switch` holds a keep-alive pool to the old
deployment; wrk sends steady load through `front`, which holds wrk's
keep-alive connections and is never reloaded, as Railway's edge keeps its
clients' connections across a switch. The new deployment is up and healthy;
then, in one order or the other, `switch` is pointed at it (a graceful
reload) and the old one gets SIGTERM, the way Railway's edge and its stop
signal race.

Why two: a reloading nginx closes its idle keep-alive client connections,
and a request wrk sends on one at that instant is lost before any server
sees it; wrk counts a read error and does not retry. With wrk on the
reloaded nginx that cost 1-11 "failed" requests in 7 of 10 runs, also when
the old server got no SIGTERM at all, and nginx itself logged no failed
request. Here the reload closes `front`'s pooled connections instead, and nginx
retries a request a pooled connection lost before any answer, as HTTP
clients do. A failure of the servers under test still reaches wrk: as the
502 or 504 that `switch` answers, which `front` passes on.
"""

import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from .load import wrk
from .servers import free_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
LOAD_CONNECTIONS = 64
# Seconds between SIGTERM and the switch in the "SIGTERM first" order.
SIGTERM_LEAD = 1.0

CONFIG = """\
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream app {{
        server 127.0.0.1:{upstream};
        keepalive {keepalive};
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


class Nginx:
    """An nginx in front of one upstream port, switched by a graceful reload."""

    # Its pool to the server under test, as a proxy keeps one.
    KEEPALIVE = 32

    def __init__(self, upstream: int):
        self.prefix = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
        self.port = free_port()
        self.config = self.prefix / "nginx.conf"
        self._write(upstream)
        self.process = subprocess.Popen(
            [NGINX, "-p", str(self.prefix), "-c", str(self.config), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_listening()

    def _write(self, upstream: int) -> None:
        config = CONFIG.format(prefix=self.prefix, port=self.port, upstream=upstream, keepalive=self.KEEPALIVE)
        self.config.write_text(config)

    def _wait_listening(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited: {(self.prefix / 'error.log').read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("nginx did not listen")

    def switch(self, upstream: int) -> None:
        self._write(upstream)
        self.process.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGQUIT)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.prefix, ignore_errors=True)


class Front(Nginx):
    """The edge's client side: holds wrk's connections, never reloaded, in front of the `switch` nginx."""

    # A pooled connection for each of wrk's, so none is opened while `switch` reloads.
    KEEPALIVE = 2 * LOAD_CONNECTIONS


def nginx_missing() -> str | None:
    return None if Path(NGINX).exists() else "nginx is not installed (apt-get install nginx)"


def redeploy(start, order: str, seconds: float) -> dict:
    """Failed requests through nginx while `start()`'s old server hands over to a new one, in `order`."""
    old, new = start(), start()
    proxy = Nginx(old.port)
    front = Front(proxy.port)
    moments = {}  # when the old server got SIGTERM, and when it exited
    exited = threading.Event()

    def terminate_old():
        moments["sigterm"] = time.monotonic()
        old.process.send_signal(signal.SIGTERM)
        threading.Thread(target=lambda: (old.process.wait(), moments.update(exit=time.monotonic()), exited.set()),
                         daemon=True).start()  # fmt: skip

    try:
        result = {}
        load = threading.Thread(
            target=lambda: result.update(run=wrk(f"http://127.0.0.1:{front.port}/io", LOAD_CONNECTIONS, seconds))
        )
        load.start()
        time.sleep(seconds / 3)
        if order == "switch, then SIGTERM":
            proxy.switch(new.port)
            terminate_old()
        elif order != CONTROL:
            terminate_old()
            time.sleep(SIGTERM_LEAD)
            proxy.switch(new.port)
        load.join()
        if order == CONTROL:
            terminate_old()
        exited.wait(60)
    finally:
        front.stop()
        proxy.stop()
        exit_code = old.stop()
        new.stop()
    run = result["run"]
    return {
        "requests": run.requests,
        "failed": run.errors + run.timeouts + run.non_2xx,
        "timeouts": run.timeouts,
        "old_exit_code": exit_code,
        # Seconds from SIGTERM to the old server's exit (None: still running a minute later).
        "old_exit_seconds": round(moments["exit"] - moments["sigterm"], 2) if "exit" in moments else None,
    }


# The same load with no redeploy: what fails anyway (an overloaded server times out) is not the redeploy's doing.
CONTROL = "no redeploy (control)"
ORDERS = ("switch, then SIGTERM", f"SIGTERM {SIGTERM_LEAD:g} s before the switch", CONTROL)
