"""Bad days against a real Postgres: workers SIGKILLed under load, Postgres restarted mid-load."""

import http.client
import os
import signal
import threading
import time

import psycopg
import pytest

from railkit import project
from railkit.db.testing import HOW_TO_GET_IT, ThrowawayPostgres, server_binaries

from .servers import wait_until

DB_APP = "railkit_tests.fixture_db_app:create_app()"
WORKER_NAMES = f"{project.NAME} worker %"
pytestmark = pytest.mark.cluster


@pytest.fixture
def own_postgres():
    """A server of this test's own: these tests stop and restart it."""
    if server_binaries() is None:
        pytest.skip(HOW_TO_GET_IT)
    with ThrowawayPostgres(max_connections=100) as server:
        yield server


class Load:
    """Clients sending requests back to back until stopped; every answer's status, or the error, is kept."""

    def __init__(self, server, path: str, clients: int):
        self.server, self.path = server, path
        self.results: list[tuple[float, int | str, bytes]] = []
        self.stopped = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self):
        while not self.stopped.is_set():
            try:
                status, headers, _ = self.server.request(self.path, timeout=30)
                self.results.append((time.monotonic(), status, headers.get("Content-Type", "")))
            # A worker SIGKILLed mid-answer cuts its body short (IncompleteRead, an HTTPException): a failed
            # request like any other, counted, and the client goes on.
            except (OSError, http.client.HTTPException) as error:
                self.results.append((time.monotonic(), type(error).__name__, ""))

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_exc):
        self.stopped.set()
        for thread in self.threads:
            thread.join(60)


def _worker_backends(url: str) -> list[str]:
    with psycopg.connect(url, autocommit=True) as connection:
        query = "SELECT application_name FROM pg_stat_activity WHERE application_name LIKE %s"
        return [row[0] for row in connection.execute(query, (WORKER_NAMES,)).fetchall()]


@pytest.mark.load
def test_sigkill_a_worker_every_2s_under_database_load(serve, own_postgres):
    workers, pool_size = 3, 4
    env = {
        "DATABASE_URL": own_postgres.url,
        "WEB_CONCURRENCY": str(workers),
        "DATABASE_POOL_SIZE": str(pool_size),
        "RATE_LIMIT": "off",
    }
    server = serve(env, app=DB_APP)
    server.wait_for_workers(workers)
    clients, kills = 6, 5
    with Load(server, "/db/sleep?seconds=0.005", clients=clients) as load:
        for _ in range(kills):
            time.sleep(2)
            victim = min(server.worker_pids())
            os.kill(victim, signal.SIGKILL)
            server.wait_for_workers(workers, without=victim)
            # No leak: the dead worker's connections end with it, and the service stays within its budget.
            wait_until(
                lambda v=victim: not [name for name in _worker_backends(own_postgres.url) if name.endswith(f" {v}")],
                message=f"worker {victim}'s connections gone",
            )
            assert len(_worker_backends(own_postgres.url)) <= workers * pool_size
    statuses = [status for _, status, _ in load.results]
    assert len(statuses) > 200, "the load ran"
    # A SIGKILL loses only what its victim held: at most one request per client (each has one in flight), cut off,
    # never answered with an error. A ratio of served requests would hang on the machine's speed, not the cluster.
    lost = [status for status in statuses if status != 200]
    assert all(isinstance(status, str) for status in lost), {s: statuses.count(s) for s in set(statuses)}
    assert len(lost) <= kills * clients, {s: statuses.count(s) for s in set(statuses)}


@pytest.mark.load
def test_postgres_restarted_mid_load_errors_are_503_problems_and_service_recovers(serve, own_postgres):
    env = {"DATABASE_URL": own_postgres.url, "WEB_CONCURRENCY": "2", "RATE_LIMIT": "off"}
    server = serve(env, app=DB_APP)
    workers = server.wait_for_workers(2)
    with Load(server, "/db/backend", clients=4) as load:
        wait_until(lambda: len(load.results) > 50, message="load under way")
        own_postgres.stop()  # fast: Postgres ends every session, as a restart or failover does
        time.sleep(1)
        own_postgres.start()
        restarted = time.monotonic()
        wait_until(lambda: [r for r in load.results if r[0] > restarted and r[1] == 200], message="first 200 after")
        recovered = time.monotonic()
        wait_until(lambda: len([r for r in load.results if r[0] > recovered + 1]) > 100, message="load after recovery")
    failures = [result for result in load.results if result[1] != 200]
    assert all(status == 503 and kind == "application/problem+json" for _, status, kind in failures), failures[:5]
    after = [status for at, status, _ in load.results if at > recovered + 1]
    assert after and set(after) == {200}, "full recovery (pool_pre_ping replaced the dead connections)"
    assert recovered - restarted < 10
    assert server.worker_pids() == workers, "no worker died"
