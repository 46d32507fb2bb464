"""Request bodies: JSON parsed fast and within the worker's memory, and a clean 4xx for every bad body.

An 8 MB body of `[{},{},...]` becomes about 200 MB of Python objects, and a
worker parses several bodies at once: the watchdog's once-a-second check
would see the worker's memory only after the container ran out. So the cost
of a body is counted before it is parsed, at C speed (bytes.count), and
bodies that would not fit are refused (413) or wait their turn (429).

JSON is orjson, behind Flask's own JSON interface (app.json). Every body is
parsed by orjson first, so what is accepted does not depend on what else the
body holds: NaN and Infinity are always refused (they are not JSON). orjson
turns an integer outside 64 bits into a float; a body with a run of 19 or more
digits is parsed again by the standard library, which keeps such integers
exact (up to Python's 4,300-digit limit, past which the body is refused).
"""

import json
import re
import sys
import threading
import time

import orjson
from flask import Flask, current_app, g, has_request_context
from flask.json.provider import DefaultJSONProvider
from gunicorn.http.errors import ChunkMissingTerminator, InvalidChunkExtension, InvalidChunkSize, LimitRequestHeaders

from ..seam import ClientError
from .problems import Problem, problem_response

# orjson serialises at most 254 levels of nesting. Input deeper than this is
# refused when it is parsed, so whatever is parsed can be answered, inside
# an envelope of up to ANSWER_ENVELOPE_DEPTH levels ({"received": ...}).
MAX_JSON_DEPTH = 200
ANSWER_ENVELOPE_DEPTH = 254 - MAX_JSON_DEPTH
# What parsed JSON costs in Python objects, in bytes, as an upper bound:
# per container ({ or [), per separator (, or :) and per string.
CONTAINER_COST = 80
SEPARATOR_COST = 40
STRING_COST = 56
# JSON being parsed may hold this share of WORKER_MAX_MEMORY_MB at once, per worker.
PARSE_BUDGET_SHARE = 0.5
# A gevent worker parses on the one thread that serves all its clients, and
# parsing holds it: one body may cost this share of the budget at most
# (about 0.1 s of parsing on hobby), so the worker keeps answering others.
GEVENT_PARSE_SHARE = 8
# A body that must wait longer than this for its share of the budget gets a 429.
PARSE_WAIT_SECONDS = 10
RETRY_AFTER_SECONDS = 1
# Integers orjson may turn into floats (beyond 64 bits: -9223372036854775809 has 19 digits), kept exact
# by a second parse. A run anywhere (in a string too) costs only that second parse.
BIG_INTEGER = re.compile(rb"\d{19,}")
# Broken chunked framing, raised by gunicorn while the app reads the body.
FRAMING_ERRORS = (InvalidChunkSize, ChunkMissingTerminator, InvalidChunkExtension, LimitRequestHeaders)


def parse_cost(data: bytes) -> int:
    """An upper bound of the memory, in bytes, that parsing `data` as JSON takes."""
    containers = data.count(b"{") + data.count(b"[")
    separators = data.count(b",") + data.count(b":")
    strings = data.count(b'"') // 2
    return containers * CONTAINER_COST + separators * SEPARATOR_COST + strings * STRING_COST + len(data)


class ParseBudget:
    """The bytes of JSON objects a worker may build at once; a body waits for its share, or is refused."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.reserved = 0
        self.changed = threading.Condition()

    def reserve(self, cost: int, wait: float) -> bool:
        deadline = time.monotonic() + wait
        with self.changed:
            while self.reserved + cost > self.capacity:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.changed.wait(remaining)
            self.reserved += cost
            return True

    def release(self, cost: int) -> None:
        with self.changed:
            self.reserved -= cost
            self.changed.notify_all()


def _mb(size: int) -> str:
    return f"{size / 2**20:.0f} MB"


def _on_gevent() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return bool(monkey and monkey.is_module_patched("socket"))


def _budget_for(data: bytes) -> None:
    """Hold this request's share of the parse budget until it ends, or refuse the body."""
    budget: ParseBudget = current_app.extensions["parse_budget"]
    cost = parse_cost(data)
    largest = budget.capacity // GEVENT_PARSE_SHARE if _on_gevent() else budget.capacity
    if cost > largest:
        raise Problem(
            413,
            f"This JSON would take about {_mb(cost)} of memory to parse; one request may use {_mb(largest)}",
        )
    if not budget.reserve(cost, PARSE_WAIT_SECONDS):
        raise Problem(
            429,
            "Too many large bodies are being parsed right now; retry shortly",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    g.parse_reserved = g.get("parse_reserved", 0) + cost


def _release_budget(_error=None) -> None:
    cost = g.pop("parse_reserved", 0)
    if cost:
        current_app.extensions["parse_budget"].release(cost)


class OrjsonProvider(DefaultJSONProvider):
    """Flask's JSON provider, with orjson underneath: same interface, same output, faster."""

    def dumps(self, obj, **kwargs) -> str:
        option = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME
        if kwargs.pop("sort_keys", self.sort_keys):
            option |= orjson.OPT_SORT_KEYS
        if kwargs.pop("indent", None):
            option |= orjson.OPT_INDENT_2
        default = kwargs.pop("default", self.default)
        kwargs.pop("separators", None)
        kwargs.pop("ensure_ascii", None)
        if kwargs:
            return super().dumps(obj, **kwargs)  # options orjson does not have
        try:
            return orjson.dumps(obj, default=default, option=option).decode()
        except orjson.JSONEncodeError as error:
            if "64-bit" in str(error):
                return json.dumps(obj, default=default, sort_keys=bool(option & orjson.OPT_SORT_KEYS))
            raise

    def loads(self, s, **kwargs):
        data = s.encode() if isinstance(s, str) else bytes(s)
        if has_request_context():
            _budget_for(data)
        # JSONDecodeError is a ValueError: get_json() answers 400. orjson decides what is JSON.
        value = orjson.loads(data)
        if kwargs or BIG_INTEGER.search(data):
            kwargs.setdefault("parse_constant", _refuse_constant)
            try:
                value = json.loads(data, **kwargs)
            except RecursionError:
                raise ValueError("JSON nested too deeply") from None
        if data.count(b"[") + data.count(b"{") > MAX_JSON_DEPTH:
            _check_depth(value)
        return value


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON value")


def _check_depth(value) -> None:
    """Refuse nesting deeper than MAX_JSON_DEPTH, measured by orjson at C speed.

    orjson refuses to serialise past 254 levels, so `value` wrapped in
    ANSWER_ENVELOPE_DEPTH lists serialises only if it is at most MAX_JSON_DEPTH deep.
    """
    for _ in range(ANSWER_ENVELOPE_DEPTH):
        value = [value]
    try:
        orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except (orjson.JSONEncodeError, TypeError) as error:
        if "Recursion" in str(error):
            raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None


def handle_client_error(error: ClientError):
    """A body the worker refused while the app read it: too slow (408) or too large (413)."""
    return problem_response(error.status, str(error), title=error.reason)


def handle_broken_framing(error: Exception):
    return problem_response(400, f"The chunked body is malformed: {error}")


def init_app(app: Flask, worker_max_memory_mb: int) -> None:
    app.json = OrjsonProvider(app)
    app.extensions["parse_budget"] = ParseBudget(int(worker_max_memory_mb * 2**20 * PARSE_BUDGET_SHARE))
    app.teardown_request(_release_budget)
    app.register_error_handler(ClientError, handle_client_error)
    for error in FRAMING_ERRORS:
        app.register_error_handler(error, handle_broken_framing)
