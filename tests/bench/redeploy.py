"""A redeploy through a real proxy (issue 14): requests lost while traffic moves to a new deployment.

nginx holds a keep-alive pool to the old deployment while wrk sends steady
load through it. The new deployment is up and healthy; then, in one order or
the other, nginx is switched to it (a graceful reload) and the old one gets
SIGTERM, the way Railway's edge and its stop signal race.
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
        keepalive 32;
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
        self.config.write_text(CONFIG.format(prefix=self.prefix, port=self.port, upstream=upstream))

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


def nginx_missing() -> str | None:
    return None if Path(NGINX).exists() else "nginx is not installed (apt-get install nginx)"


def redeploy(start, order: str, seconds: float) -> dict:
    """Failed requests through nginx while `start()`'s old server hands over to a new one, in `order`."""
    old, new = start(), start()
    proxy = Nginx(old.port)
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
            target=lambda: result.update(run=wrk(f"http://127.0.0.1:{proxy.port}/io", LOAD_CONNECTIONS, seconds))
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
