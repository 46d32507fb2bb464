"""The shared limit under each worker class's concurrency: exact under a crowd, on a few Redis connections a worker."""

import socket
import threading
from collections import Counter

import pytest

from railkit import project
from railkit.cluster.sizing import workers_for_cpus, workers_for_memory
from railkit.plans import PLANS

from .redis_server import needs_redis, redis_clients, running_redis
from .servers import DEADLINE, PROJECT_ROOT

# A crowd bigger than a gthread worker's threads and a gevent worker's old pool of 100 connections.
CLIENTS = 300


@pytest.fixture
def redis_url(tmp_path):
    """A private redis-server on a free loopback port, stopped afterwards: (its URL, its process)."""
    yield from running_redis(tmp_path)


def crowd(server, path: str, clients: int = CLIENTS) -> list:
    """`clients` requests sent at once, each on its own connection: their statuses (or what went wrong)."""
    statuses = []
    all_connected = threading.Barrier(clients)

    def one():
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE) as connection:
                all_connected.wait(timeout=DEADLINE)
                connection.sendall(f"GET {path} HTTP/1.1\r\nHost: crowd\r\nConnection: close\r\n\r\n".encode())
                answer = b""
                while chunk := connection.recv(65536):
                    answer += chunk
            statuses.append(int(answer[9:12]))
        except (OSError, ValueError, threading.BrokenBarrierError) as error:
            statuses.append(repr(error))

    threads = [threading.Thread(target=one) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


@pytest.mark.cluster
@pytest.mark.load
@needs_redis
def test_a_crowd_on_one_replica_gets_exactly_the_limit_through(serve, redis_url):
    """300 clients at once on one key of a healthy Redis: gevent let 150 to 300 of 100 through (issue 32)."""
    url, _ = redis_url
    server = serve({"REDIS_URL": url, "RATE_LIMIT": "100/minute", "WEB_CONCURRENCY": "1"})
    statuses = crowd(server, "/")
    assert statuses.count(200) == 100, Counter(statuses)
    assert set(statuses) <= {200, 429}, Counter(statuses)
    redis_lines = [log["message"] for log in server.logs if "Redis" in log.get("message", "")]
    assert redis_lines == [], "a busy worker took a healthy Redis for a dead one"


@pytest.mark.cluster
@pytest.mark.load
@needs_redis
def test_each_worker_holds_a_few_redis_connections_however_many_clients(serve, redis_url):
    """One connection per thread (gthread) or up to 100 (gevent) a worker before: 134 per replica measured."""
    from railkit.web.ratelimit_redis import REDIS_CONNECTIONS_PER_WORKER

    url, _ = redis_url
    server = serve({"REDIS_URL": url, "RATE_LIMIT": "100000/minute", "WEB_CONCURRENCY": "2"})
    server.wait_for_workers(2)
    statuses = crowd(server, "/")
    assert set(statuses) == {200}, Counter(statuses)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    assert 0 < redis_clients(port) <= 2 * REDIS_CONNECTIONS_PER_WORKER
    # What the README promises for the plan with the most replicas, at its size.
    largest = max(PLANS.values(), key=lambda plan: plan.max_replicas)
    workers = max(
        1,
        min(
            workers_for_cpus(largest.vcpu, project.WORKER_CLASS),
            workers_for_memory(largest.memory_mb, largest.worker_max_memory_mb),
        ),
    )
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert f"{workers * REDIS_CONNECTIONS_PER_WORKER} per replica on {largest.label}" in readme
