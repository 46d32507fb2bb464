"""Each layer's CPU cost per request, in-process: copied beside main.py and run with the project's Python.

`python layers_probe.py <package> <cpu seconds per variant> <rounds>` prints JSON: the CPU time
per request of the /cpu route on a bare Flask app, on that app with one layer of the
generated project added, and on the generated app itself. CPU time (not wall time) and
no server: the figures hold on a busy machine, and they are the template's own cost.
"""

import importlib
import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("RATE_LIMIT", "1000000000/second")
# Metrics as the cluster keeps them: values in memory-mapped files, one set per process.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="layers-probe-"))


def bare_app():
    from bench_routes import RECORDS
    from flask import Flask, jsonify

    app = Flask("bare")

    @app.get("/cpu")
    def cpu():
        return jsonify(RECORDS)

    return app


def with_layer(package: str, layer: str):
    """The bare app with one of the generated project's layers, set up as its app factory does."""
    app = bare_app()
    settings = importlib.import_module("railkit.settings").load_settings_or_exit()
    app.config.from_mapping(
        SETTINGS=settings,
        RATELIMIT_DEFAULT=settings.rate_limit,
        RATELIMIT_STORAGE_URI="memory://",
        ACCESS_LOG=settings.access_log,
    )
    module = importlib.import_module(f"railkit.web.{layer}")
    if layer == "ratelimit":
        module.init_app(app, exempt=[])
    elif layer == "bodies":
        module.init_app(app, settings.worker_max_memory_mb)
    else:
        module.init_app(app)
    return app


def full_app():
    import bench_routes

    return bench_routes.app


def cpu_per_request(app, seconds: float) -> float:
    """Microseconds of this process's CPU per GET /cpu, through the app's WSGI callable."""
    from werkzeug.test import EnvironBuilder

    environ = EnvironBuilder(path="/cpu", environ_base={"REMOTE_ADDR": "10.0.0.1"}).get_environ()

    def start_response(status, headers, exc_info=None):
        assert status.startswith("200"), status

    def one():
        for _chunk in app(dict(environ), start_response):
            pass

    for _ in range(50):  # warm up caches and the interpreter's specialisation
        one()
    count, started = 0, time.process_time()
    while time.process_time() - started < seconds:
        for _ in range(20):
            one()
        count += 20
    return (time.process_time() - started) / count * 1e6


def main() -> None:
    package, seconds, rounds = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    import logging

    logging.disable(logging.WARNING)  # the rate limiter's per-worker warning
    variants = {"bare Flask": bare_app()}
    for layer in ("security", "request_log", "problems", "ratelimit", "metrics", "bodies"):
        variants[f"+ {layer}"] = with_layer(package, layer)
    variants["generated app"] = full_app()
    samples = {name: [] for name in variants}
    for _ in range(rounds):  # alternated, the median kept
        for name, app in variants.items():
            samples[name].append(cpu_per_request(app, seconds))
    print(json.dumps({name: round(statistics.median(values), 1) for name, values in samples.items()}))


if __name__ == "__main__":
    main()
