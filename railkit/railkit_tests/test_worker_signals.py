"""A granian worker's signals: taken by whichever thread the kernel chose, and not inherited by what the app forks.

In a module of its own, collected last: the platform suite's shards deal tests
round-robin in collection order, and tests added here leave every other test in
the shard it had.
"""

import http.client
import json
import signal

import pytest

pytestmark = [pytest.mark.server("granian"), pytest.mark.cluster]


@pytest.mark.parametrize(("name", "status"), [("SIGTERM", "exit code 0"), ("SIGABRT", "exit code 134")])
def test_a_signal_another_thread_takes_still_stops_the_worker(serve, name, status):
    """The kernel gives a process's signal to any of its threads, and Python runs the handler only in the main one,
    which granian leaves waiting: a SIGTERM a request thread took went unheeded until another signal came. Under load
    about 1 in 15 retirements hung so, until the master killed the worker 10 s later with what it held; the
    watchdog's SIGABRT lost the stuck worker's stacks the same way.
    """
    server = serve({"WEB_CONCURRENCY": "1"}, app="railkit_tests.faulty_app:app")
    [worker] = server.wait_for_workers(1)
    try:
        server.request(f"/signal-this-thread?name={name}")
    except http.client.RemoteDisconnected:
        assert name == "SIGABRT"  # the abort may end the worker before its answer is out
    server.wait_for_workers(1, without=worker)
    ended = server.wait_for_log(lambda log: log.get("worker_pid") == worker and "lifetime_s" in log)
    assert ended["status"] == status, ended
    if name == "SIGABRT":
        stacks = [log for log in server.logs if log.get("worker_pid") == worker and "stack_of" in log]
        assert stacks and all(log["stack_of"] != "railkit-stop-signals" for log in stacks), stacks
    assert server.request("/")[0] == 200


def test_a_process_the_app_forks_keeps_none_of_the_workers_signal_handling(serve):
    """Its SIGTERM ends it, as in any process, instead of running the worker's stop (and, through the inherited
    wakeup fd, the worker's own retirement)."""
    server = serve({"WEB_CONCURRENCY": "1"}, app="railkit_tests.faulty_app:app")
    [worker] = server.wait_for_workers(1)
    status, _, body = server.request("/fork-and-sigterm")
    assert status == 200 and json.loads(body) == {"signal": signal.SIGTERM}
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("GET", "/")
    answer = connection.getresponse()
    answer.read()
    assert answer.status == 200 and answer.getheader("Connection") != "close", "the worker began to retire"
    assert server.worker_pids() == {worker}
