"""The master's bookkeeping, in-process: death causes, back-off, request tracking, board slots.

And one real cluster: workers stopped by a stop signal to the whole process group are not replaced.
"""

import contextlib
import os
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import psutil
import pytest
from gunicorn.errors import HaltServer

from railkit.cluster.board import MAX_SLOTS, Board
from railkit.cluster.hooks import ClusterHooks, warn_if_python_differs
from railkit.cluster.inflight import InFlight
from railkit.cluster.lifecycle import (
    MAX_UNSTABLE,
    STREAK_RESET,
    UNKNOWN_STATUS,
    CrashGuard,
    Death,
    describe_status,
)
from railkit.cluster.sizing import size_cluster
from railkit.cluster.workers.balance import AcceptShare
from railkit.settings import SettingError, Settings

from .servers import wait_until

FAULTY = "railkit_tests.faulty_app:app"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_causes_name_what_happened():
    assert "OOM" in Death("SIGKILL", 5.0).cause
    assert "memory limit" in Death("SIGTERM", 5.0, over_memory=True).cause
    assert "timed out" in Death("SIGABRT", 5.0, timed_out=True).cause
    assert Death("exit code 13", 5.0).cause == "crashed (exit code 13)"
    assert "forced" in Death("SIGKILL", 5.0, shutting_down=True).cause
    # Asked to stop alone and killed by the master when it did not: not the OOM killer, and not instability.
    overdue = Death("SIGKILL", 0.5, overdue=True)
    assert "asked to stop" in overdue.cause and "OOM" not in overdue.cause and overdue.intended
    assert "max_requests" in Death("exit code 0", 5.0).cause
    # Stopped on the group's stop signal while the master was stopping: no death, and not replaced.
    early = Death("exit code 0", 5.0, stopping=True)
    assert early.kind == "early" and early.clean_stop and early.intended and "not replaced" in early.cause
    assert Death("SIGKILL", 5.0, stopping=True).kind == "killed"
    assert Death("SIGTERM", 5.0, over_memory=True, stopping=True).kind == "memory"


def test_quick_deaths_back_off_exponentially_then_give_up():
    clock = Clock()
    guard = CrashGuard(clock)
    delays = []
    for _ in range(MAX_UNSTABLE):
        assert not guard.exhausted
        guard.record(Death("exit code 1", 0.1))
        delays.append(guard.delay())
        clock.now += 0.5
    assert guard.exhausted
    assert delays == sorted(delays) and delays[0] < delays[-1]


def test_stable_and_intended_deaths_do_not_count():
    guard = CrashGuard(Clock())
    guard.record(Death("exit code 1", 60.0))
    guard.record(Death("exit code 0", 0.1))
    guard.record(Death("SIGTERM", 0.1, over_memory=True))
    assert guard.streak == 0
    assert guard.delay() == 0


def test_the_streak_resets_after_a_quiet_spell():
    clock = Clock()
    guard = CrashGuard(clock)
    for _ in range(MAX_UNSTABLE - 1):
        guard.record(Death("exit code 1", 0.1))
    clock.now += STREAK_RESET + 1
    assert guard.delay() == 0
    guard.record(Death("exit code 1", 0.1))
    assert guard.streak == 1


def test_exit_status_comes_from_the_wait_status():
    assert describe_status(0) == "exit code 0"
    assert describe_status(13 << 8) == "exit code 13"
    assert describe_status(signal.SIGSEGV) == "SIGSEGV"
    assert describe_status(None) == UNKNOWN_STATUS


def test_an_unknown_status_counts_as_unstable():
    guard = CrashGuard(Clock())
    death = Death(describe_status(None), 0.1)
    assert not death.intended
    guard.record(death)
    assert guard.streak == 1


def test_back_off_is_a_deadline_not_a_sleep():
    clock = Clock()
    guard = CrashGuard(clock)
    assert guard.seconds_until_spawn() == 0
    guard.record(Death("SIGSEGV", 0.1))
    wait = guard.seconds_until_spawn()
    assert wait == pytest.approx(guard.delay()) and wait > 0
    clock.now += wait
    assert guard.seconds_until_spawn() == 0


def test_in_flight_tracking_survives_racing_threads():
    """gthread runs pre_request and post_request in several threads at once."""
    published = []
    in_flight = InFlight(lambda since, label: published.append((since, label)))
    errors = []

    def serve_many(offset):
        try:
            for number in range(10_000):
                key = offset + number
                in_flight.begin(key, f"GET /{key} -")
                in_flight.pause(key)
                in_flight.resume(key)
                in_flight.end(key)
        except Exception as error:
            errors.append(error)

    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=serve_many, args=(offset * 10_000,)) for offset in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(previous)
    assert errors == []
    assert published[-1] == (0.0, ""), "an idle worker still looks busy"
    assert len(in_flight) == 0


def test_the_oldest_busy_request_is_published():
    published = []
    in_flight = InFlight(lambda since, label: published.append((since, label)))
    in_flight.begin(1, "GET /first -")
    in_flight.begin(2, "POST /second abc")
    assert published[-1][1] == "GET /first -"
    in_flight.pause(1)  # the first one's client downloads its answer
    assert published[-1][1] == "POST /second abc"
    in_flight.end(2)
    assert published[-1] == (0.0, "")


def test_the_board_is_written_only_when_the_oldest_request_changes():
    """Every request begins, pauses and ends: most of those leave the oldest as it was, and the board alone."""
    published = []
    in_flight = InFlight(lambda since, label: published.append((since, label)))
    in_flight.begin(1, "GET /first -")
    in_flight.begin(2, "GET /second -")
    in_flight.pause(2)
    in_flight.end(2)
    assert [label for _, label in published] == ["GET /first -"]
    in_flight.end(1)
    assert published[-1] == (0.0, "") and len(published) == 2


def test_a_full_board_stops_the_master_loudly(tmp_path):
    """Every slot taken: pre_fork raises HaltServer instead of gunicorn's silent StopIteration."""
    hooks = ClusterHooks(Settings.from_env({}), size_cluster(Settings.from_env({})))
    hooks.board = Board.create(tmp_path)
    server = SimpleNamespace(WORKERS={pid: SimpleNamespace(slot=pid) for pid in range(MAX_SLOTS)})
    with pytest.raises(HaltServer) as halted:
        hooks.pre_fork(server, SimpleNamespace())
    assert "WEB_CONCURRENCY" in halted.value.reason
    del server.WORKERS[7]
    worker = SimpleNamespace()
    hooks.pre_fork(server, worker)
    assert worker.slot == 7


def test_web_concurrency_fits_the_board_through_a_reload():
    """A SIGHUP reload runs old and new workers side by side: both sets need slots."""
    most = max(n for n in (128, 256, 512) if _accepted(n))
    assert 2 * most <= MAX_SLOTS


def _accepted(workers: int) -> bool:
    try:
        Settings.from_env({"WEB_CONCURRENCY": str(workers)})
    except SettingError:
        return False
    return True


@pytest.mark.parametrize(
    ("pin", "warned"),
    [("2.7", True), ("3.1", True), (f"{sys.version_info.major}.{sys.version_info.minor}", False), ("", False)],
)
def test_start_says_when_python_differs_from_its_pin(tmp_path, caplog, pin, warned):
    """The start-up story names the Python that runs when .python-version pins another one."""
    (tmp_path / ".python-version").write_text(pin + "\n")
    warn_if_python_differs(tmp_path / ".python-version")
    assert any(".python-version pins" in record.getMessage() for record in caplog.records) is warned


def test_child_exit_never_waits_for_a_scrape_to_fold_a_dead_workers_metrics(tmp_path, monkeypatch):
    """A scrape holding the metrics folder leaves the fold to a later pass of the master's loop: no sleep in a hook."""
    from prometheus_client.mmap_dict import MmapedDict

    from railkit.cluster import metrics

    [env] = metrics.multiprocess_env(tmp_path)
    folder = tmp_path / metrics.FOLDER_NAME
    monkeypatch.setenv(metrics.MULTIPROC_ENV, env.partition("=")[2])
    dead_pid, key = 4242, '["requests_total", "requests_total", {}, "Requests"]'
    dead = MmapedDict(str(folder / f"counter_{dead_pid}.db"))
    dead.write_value(key, 5.0, 0.0)
    dead.close()

    def no_sleep(seconds):
        raise AssertionError(f"the master slept {seconds}s inside child_exit")

    monkeypatch.setattr("time.sleep", no_sleep)
    with metrics.folder_lock(folder, exclusive=False):  # a scrape reading the folder
        metrics.forget_worker(dead_pid)
        assert (folder / f"counter_{dead_pid}.db").exists(), "folded under a scrape's lock"
    metrics.fold_dead_workers(alive={dead_pid + 1})
    assert not (folder / f"counter_{dead_pid}.db").exists()
    archive = MmapedDict(str(folder / "counter_archive.db"))
    try:
        assert archive.read_value(key)[0] == 5.0
    finally:
        archive.close()


@pytest.mark.cluster
def test_a_stop_signal_to_the_whole_group_replaces_no_worker_and_finishes_requests(serve):
    """docker stop, or a terminal, signals the workers too: during SHUTDOWN_DELAY the idle ones exit, and stay gone."""
    # Longer than a loaded machine takes to stop the workers by themselves (the master stops once they have):
    # past it the master would tell them to stop too, and their cause would be the master's.
    server = serve({"WEB_CONCURRENCY": "2", "SHUTDOWN_DELAY": "8"}, app=FAULTY)
    before = server.wait_for_workers(2)
    master = psutil.Process(server.process.pid)
    seen = set(before)

    def master_exited():
        with contextlib.suppress(psutil.Error):
            seen.update(child.pid for child in master.children())
        return server.process.poll() is not None

    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(server.request, "/slow?seconds=1")
        server.wait_for_log(lambda log: log.get("message") == "slow request started")
        os.killpg(server.process.pid, signal.SIGTERM)
        wait_until(master_exited, interval=0.01, message="the master's exit")
        assert busy.result(timeout=10)[0] == 200, "the request in flight was not finished"
    assert server.wait_exit() == 0
    assert seen == before, f"workers spawned after the stop signal: {seen - before}"
    assert (
        len(
            [log for log in server.logs if log.get("message", "").startswith("Worker ") and "started" in log["message"]]
        )
        == 2
    )
    deaths = [log for log in server.logs if log.get("worker_pid") in before and "cause" in log]
    assert {log["worker_pid"] for log in deaths} == before
    assert all(log["level"] == "info" and " stopped " in log["message"] for log in deaths), deaths
    assert any("process group" in log["cause"] for log in deaths)
    # Nobody is left to serve the rest of the lame duck: the master stops at once.
    assert [log for log in server.logs if log.get("message", "").startswith("Stopping now: every worker stopped")]


def test_the_accept_share_counts_live_accepting_workers_whatever_their_slot(tmp_path):
    """Dead slots never count, nor a stopping worker's; a worker in a high slot (after SIGHUP or SIGTTIN) does."""
    board = Board.create(tmp_path)
    for slot, pid in ((0, 11), (1, 12), (5, 13)):
        board.claim(slot, pid)
    busy, idle, high = AcceptShare(board, 0), AcceptShare(board, 1), AcceptShare(board, 5)
    assert not high.over_share(0) and not idle.over_share(0)
    assert busy.over_share(100)  # mean 33: over 1.2 x 33 + 16
    board.release(1)  # a dead worker's slot, once reaped
    high.withdraw()  # a worker stopping (SIGHUP, SIGTTOU, a recycle)
    assert not busy.over_share(100), "the only accepting worker must accept"
    assert not AcceptShare(board, 7).over_share(10**6), "an unclaimed slot is no worker"
