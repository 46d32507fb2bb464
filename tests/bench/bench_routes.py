"""Benchmark routes, added beside main.py in a generated project: the same app, two workloads."""

import time

from flask import jsonify
from main import app

# A few hundred small objects, as a typical JSON API response carries.
RECORDS = [{"id": i, "name": f"item-{i}", "price": i * 1.5, "tags": ["a", "b"]} for i in range(300)]


@app.get("/trivial")
def trivial():
    """The least a route can do: a tiny JSON answer (what the server and the platform's layers cost)."""
    return {"ok": True}


@app.get("/cpu")
def cpu():
    """CPU-bound: serialise the records to JSON."""
    return jsonify(RECORDS)


@app.get("/io")
def io():
    """I/O-bound: wait 50 ms, as for a database or another service."""
    time.sleep(0.05)
    return {"waited_ms": 50}


@app.get("/big")
def big():
    """An 8 MB answer, for the slow readers' attack."""
    return b"x" * (8 * 2**20), 200, {"Content-Type": "application/octet-stream"}
