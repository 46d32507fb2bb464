"""A request stuck past REQUEST_TIMEOUT costs its worker's other requests nothing.

The watchdog recycles the worker (SIGTERM: no new connections, the requests
it holds run to their end) and aborts it only once the stuck request is all
it holds. Before, it aborted the worker at once, and every other request on
it died too (up to 31 on a gthread worker).
"""

import http.client
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from railkit.cluster.runtime import find_live_board

from .servers import wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.worker_class("gthread", "gevent")]

FAULTY = "railkit_tests.faulty_app:app"
# Requests on the stuck one's worker: streams whose every chunk is quick work for the app
# (none is stuck, even when a busy machine stalls one for a second or two: REQUEST_TIMEOUT is 4 s), and whose
# whole lasts long past the stuck request's report.
BYSTANDERS = 10
CHUNKS, PAUSE = 28, 0.5


def _ticks(port: int, path: str) -> int | str:
    """The chunks of one streamed answer, or what cut it."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("GET", path, headers={"X-Request-ID": "bystander"})
        return connection.getresponse().read().count(b"tick")
    except (OSError, http.client.HTTPException) as error:
        return type(error).__name__
    finally:
        connection.close()


def test_a_stuck_request_is_cut_alone_and_its_neighbours_finish(serve):
    env = {"WEB_CONCURRENCY": "1", "REQUEST_TIMEOUT": "4", "GRACEFUL_TIMEOUT": "60", "RATE_LIMIT": "off"}
    server = serve(env, app=FAULTY)
    [worker] = server.wait_for_workers(1)
    board = find_live_board(server.port, base=Path(server.env["XDG_RUNTIME_DIR"]))
    [slot] = board.workers()
    with ThreadPoolExecutor(BYSTANDERS + 1) as pool:
        bystanders = [
            pool.submit(_ticks, server.port, f"/stream?chunks={CHUNKS}&pause={PAUSE}") for _ in range(BYSTANDERS)
        ]
        wait_until(lambda: board.in_flight(slot.index) == BYSTANDERS, message="every bystander in flight")
        stuck = pool.submit(server.request, "/hang", headers={"X-Request-ID": "stuck-1"}, timeout=60)
        recycling = server.wait_for_log(lambda log: "recycling it" in log.get("message", ""), message="the report")
        answers = [bystander.result() for bystander in bystanders]
        with pytest.raises((OSError, http.client.HTTPException)):
            stuck.result()
    complete = answers.count(CHUNKS)
    assert complete == BYSTANDERS, f"{complete} of {BYSTANDERS} bystanders got their whole answer: {answers}"
    assert (recycling["worker_pid"], recycling["request_id"]) == (worker, "stuck-1")
    assert recycling["other_requests"] == BYSTANDERS
    abort = server.wait_for_log(lambda log: "aborting it" in log.get("message", ""), message="the abort")
    assert (abort["worker_pid"], abort["path"], abort["request_id"]) == (worker, "/hang", "stuck-1")
    death = server.wait_for_log(lambda log: log.get("worker_pid") == worker and "died" in log.get("message", ""))
    assert "timed out" in death["cause"]
    server.wait_for_workers(1, without=worker)
    assert server.request("/pid")[0] == 200
