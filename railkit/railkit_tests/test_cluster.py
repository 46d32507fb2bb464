"""The cluster's promises, checked on real gunicorn processes with real signals."""

import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

import railkit
from railkit import project
from railkit.cluster.sizing import size_cluster
from railkit.settings import EXIT_BAD_CONFIG, WORKER_CLASS, Settings

from .servers import CLUSTER_COMMAND, FIXTURE_APP, PROJECT_ROOT, free_port, message_starts, wait_until

pytestmark = pytest.mark.cluster

FAULTY = "railkit_tests.faulty_app:app"
PROJECT = project.NAME
# How long the request in flight keeps a stopping worker busy.
STOP_WAITS_SECONDS = 8


def test_starts_with_the_seed_story_and_every_line_is_json(serve):
    server = serve({"WEB_CONCURRENCY": "2"})
    server.wait_for_workers(2)
    server.wait_for_log(message_starts("Worker 2 started"))
    starting = server.wait_for_log(message_starts("Master process starting cluster mode"))
    assert starting["railkit_version"] == railkit.__version__
    assert server.wait_for_log(message_starts("CPU cores detected"))["cpus"] >= 1
    assert server.wait_for_log(message_starts("Starting 2 workers"))["workers"] == 2
    assert not [log for log in server.logs if "Perhaps out of memory" in log["message"]]
    assert all(set(log) >= {"message", "level"} for log in server.logs)
    assert len(server.logs) == len(server.lines), "a line on stdout was not JSON"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WEB_CONCURRENCY": "3"}, 3),
        ({"ENABLE_CLUSTERING": "false"}, 1),
        ({"ENABLE_CLUSTERING": "Off", "WEB_CONCURRENCY": "1"}, 1),
    ],
    ids=["web_concurrency", "clustering_off", "off_in_any_case"],
)
def test_worker_count_follows_the_environment(serve, env, expected):
    server = serve(env)
    assert len(server.wait_for_workers(expected)) == expected
    cluster = server.health()["checks"]["cluster:workers"][0]
    assert cluster["configured"] == expected


def test_clustering_sizes_itself_from_the_container(serve):
    server = serve({"ENABLE_CLUSTERING": "true"})
    story = server.wait_for_log(lambda log: "workers" in log and "threads" in log)
    # The test runs in the same container: sizing it here must give the same answer.
    expected = size_cluster(Settings.from_env(server.env))
    assert (story["workers"], story["threads"]) == (expected.workers, expected.threads)
    server.wait_for_workers(story["workers"])


def test_sigkilled_worker_is_replaced_and_its_death_logged(serve):
    server = serve({"WEB_CONCURRENCY": "2"})
    victim, survivor = sorted(server.wait_for_workers(2))
    os.kill(victim, signal.SIGKILL)
    death = server.wait_for_log(lambda log: log.get("worker_pid") == victim and "died" in log["message"])
    assert death["status"] == "SIGKILL"
    assert "killed" in death["cause"]
    assert survivor in server.wait_for_workers(2, without=victim)
    assert server.request("/health")[0] == 200


def _fill_every_worker(server, pool, seconds):
    """Start as many slow requests as the cluster serves at once; return them once all run."""
    story = server.wait_for_log(lambda log: "workers" in log and "threads" in log)
    capacity = min(story["workers"] * story["threads"], 8)

    def slow_started():
        return len([log for log in server.logs if log.get("message") == "slow request started"])

    before = slow_started()
    futures = [pool.submit(server.request, f"/slow?seconds={seconds}") for _ in range(capacity)]
    wait_until(lambda: slow_started() >= before + capacity, message=f"{capacity} requests in flight")
    return futures


def test_sigterm_finishes_requests_in_flight_and_exits_zero(serve):
    server = serve({"WEB_CONCURRENCY": "2"}, app=FAULTY)
    with ThreadPoolExecutor(8) as pool:
        in_flight = _fill_every_worker(server, pool, seconds=2)
        server.signal(signal.SIGTERM)
        statuses = [future.result()[0] for future in in_flight]
    assert statuses == [200] * len(in_flight)
    assert server.wait_exit() == 0


@pytest.mark.parametrize(
    ("stop_signal", "workers_told"),
    [(signal.SIGTERM, "Stopping: "), (signal.SIGQUIT, "Handling signal: quit")],
    ids=["SIGTERM", "SIGQUIT"],
)
def test_a_stop_while_a_worker_boots_stops_it_once_booted(serve, tmp_path, stop_signal, workers_told):
    """A stop signal that reaches a worker before gunicorn set its handler is not lost: no wait for GRACEFUL_TIMEOUT."""
    marker = tmp_path / "set-handlers"
    command = [sys.executable, "-m", "railkit_tests.slow_boot", str(marker), FIXTURE_APP]
    server = serve({"WEB_CONCURRENCY": "2", "GRACEFUL_TIMEOUT": "60"}, command=command)
    booting = message_starts("Booting worker")
    wait_until(lambda: len(list(filter(booting, server.logs))) >= 2, message="worker 2 forked")
    server.signal(stop_signal)
    server.wait_for_log(message_starts(workers_told), message="the master's stop")
    assert not list(filter(message_starts("Worker 2 started"), server.logs)), "worker 2 was not held at boot"
    marker.touch()
    stopped = time.monotonic()
    assert server.wait_exit(timeout=90) == 0
    assert time.monotonic() - stopped < 30, "the booting worker waited for GRACEFUL_TIMEOUT"
    assert server.wait_for_log(message_starts("Worker 2 started"))
    assert not [log for log in server.logs if log.get("forced")]


def test_sigterm_also_serves_connections_still_queued(serve):
    """More requests than the worker can take at once: the queued ones are not reset at stop."""
    one_at_a_time = "--threads 1 --worker-connections 1"
    server = serve({"WEB_CONCURRENCY": "1", "GUNICORN_CMD_ARGS": one_at_a_time}, app=FAULTY)
    with ThreadPoolExecutor(4) as pool:
        # Each request is long enough for all four to connect while the first is served, on a busy machine too.
        requests = [pool.submit(server.request, "/slow?seconds=1.5") for _ in range(4)]
        server.wait_for_log(lambda log: log.get("message") == "slow request started")
        wait_until(lambda: _established(server.port) >= 4, message="4 connections to the server")
        server.signal(signal.SIGTERM)
        statuses = [future.result()[0] for future in requests]
    assert statuses == [200] * 4
    assert server.wait_exit() == 0
    assert server.wait_for_log(lambda log: log.get("queued", 0) >= 1, message="the drain's log line")


def _established(port: int) -> int:
    """Connections from this test process to `port` that the kernel has established."""
    return sum(
        1
        for connection in psutil.Process().net_connections("tcp")
        if connection.raddr and connection.raddr.port == port and connection.status == psutil.CONN_ESTABLISHED
    )


def test_master_keeps_reaping_and_replacing_while_it_drains(serve):
    """The drain is a deadline of the master's loop: a worker dying meanwhile is replaced at once."""
    one_at_a_time = "--threads 1 --worker-connections 1"
    env = {"WEB_CONCURRENCY": "1", "GRACEFUL_TIMEOUT": "60", "GUNICORN_CMD_ARGS": one_at_a_time}
    server = serve(env, app=FAULTY)
    [victim] = server.wait_for_workers(1)
    with ThreadPoolExecutor(3) as pool:
        busy = pool.submit(server.request, "/slow?seconds=50")
        server.wait_for_log(lambda log: log.get("message") == "slow request started")
        queued = [pool.submit(server.request, "/pid") for _ in range(2)]
        wait_until(lambda: _established(server.port) >= 3, message="3 connections to the server")
        server.signal(signal.SIGTERM)
        os.kill(victim, signal.SIGKILL)
        server.wait_for_log(lambda log: log.get("worker_pid") == victim and "died" in log["message"], timeout=15)
        assert [future.result(timeout=15)[0] for future in queued] == [200, 200]
        with contextlib.suppress(OSError):
            busy.result()
    assert server.wait_exit(timeout=15) == 0


def test_ctrl_c_drains_like_sigterm(serve):
    server = serve({"WEB_CONCURRENCY": "1"}, app=FAULTY)
    with ThreadPoolExecutor(8) as pool:
        in_flight = _fill_every_worker(server, pool, seconds=1.5)
        # Ctrl-C in a terminal signals the whole process group, workers included.
        os.killpg(server.process.pid, signal.SIGINT)
        statuses = [future.result()[0] for future in in_flight]
    assert statuses == [200] * len(in_flight)
    assert server.wait_exit() == 0
    # A clean stop is no death: "Worker 1 stopped", never "died (... SIGTERM ...)".
    assert not [log for log in server.logs if " died " in log.get("message", "")]
    stopped = [log for log in server.logs if log.get("message", "").startswith("Worker 1 stopped")]
    assert len(stopped) == 1 and stopped[0]["level"] == "info" and "shutdown" in stopped[0]["cause"]


def test_graceful_timeout_forces_stuck_workers_and_says_so_once(serve):
    """Only the master forces a stop (a worker's own deadline is later), so exactly one line says so."""
    server = serve({"WEB_CONCURRENCY": "1", "GRACEFUL_TIMEOUT": "1"}, app=FAULTY)
    [stuck] = server.wait_for_workers(1)
    with ThreadPoolExecutor(8) as pool:
        _fill_every_worker(server, pool, seconds=20)
        server.signal(signal.SIGTERM)
        assert server.wait_exit(timeout=15) == 0
    [forced] = [log for log in server.logs if log.get("forced")]
    assert "GRACEFUL_TIMEOUT=1s" in forced["message"]
    assert forced["worker_pids"] == [stuck]


def test_worker_over_its_memory_limit_is_recycled_without_failing_requests(serve):
    server = serve({"WEB_CONCURRENCY": "2", "WORKER_MAX_MEMORY_MB": "64"}, app=FAULTY)
    first = server.wait_for_workers(2)
    # However the 6 requests are shared, one worker holds 90 MB or more: past 64 whatever its own size.
    statuses = [server.request("/leak?mb=30")[0] for _ in range(6)]
    assert statuses == [200] * 6
    death = server.wait_for_log(lambda log: "memory limit" in log.get("cause", ""))
    assert death["worker_pid"] in first
    assert server.wait_for_log(message_starts(f"Worker {death['worker']} started"), message="the replacement")
    assert server.request("/pid")[0] == 200


def test_worker_that_ignores_its_recycling_is_killed(serve):
    """Over its memory limit and stuck: SIGTERM, then SIGKILL once GRACEFUL_TIMEOUT has passed."""
    server = serve({"WEB_CONCURRENCY": "1", "WORKER_MAX_MEMORY_MB": "64", "GRACEFUL_TIMEOUT": "1"}, app=FAULTY)
    [victim] = server.wait_for_workers(1)
    with ThreadPoolExecutor(1) as pool:
        pool.submit(server.request, "/leak?mb=80&hang=1", timeout=30)
        server.wait_for_log(lambda log: "over its" in log.get("message", ""), message="the recycling line")
        server.wait_for_log(lambda log: "killing it" in log.get("message", ""), message="the escalation")
        death = server.wait_for_log(lambda log: log.get("worker_pid") == victim and "died" in log["message"])
    assert death["status"] == "SIGKILL"
    assert "memory limit" in death["cause"]
    server.wait_for_workers(1, without=victim)


def test_ttin_and_ttou_change_the_worker_count(serve):
    server = serve({"WEB_CONCURRENCY": "2"})
    server.wait_for_workers(2)
    server.signal(signal.SIGTTIN)
    server.wait_for_workers(3)
    wait_until(lambda: server.health()["checks"]["cluster:workers"][0]["configured"] == 3, message="3 configured")
    server.signal(signal.SIGTTOU)
    server.wait_for_workers(2)
    assert server.health()["checks"]["cluster:workers"][0]["configured"] == 2


def test_os_exit_kills_only_its_worker(serve):
    server = serve({"WEB_CONCURRENCY": "2"}, app=FAULTY)
    before = server.wait_for_workers(2)
    with contextlib.suppress(OSError):  # the connection dies with the worker
        server.request("/exit", timeout=10)
    death = server.wait_for_log(lambda log: log.get("status") == "exit code 13")
    assert "crashed" in death["cause"]
    assert len(before - {death["worker_pid"]}) == 1
    assert server.request("/pid")[0] == 200
    assert len(server.wait_for_workers(2)) == 2


def test_hanging_request_times_out_and_logs_its_stack(serve):
    server = serve({"WEB_CONCURRENCY": "2", "REQUEST_TIMEOUT": "2"}, app=FAULTY)
    server.wait_for_workers(2)
    with contextlib.suppress(OSError):
        server.request("/hang", headers={"X-Request-ID": "stuck-1"}, timeout=20)
    # The watchdog's first line names the request: it recycles the worker, or, under sync (whose heartbeat stops for
    # a whole request), gunicorn's own timeout may abort it first, and the watchdog names the request it was on.
    named = server.wait_for_log(
        lambda log: log.get("logger") == "railkit.cluster.watchdog" and log.get("path") == "/hang",
        message="the watchdog's line naming the request",
    )
    assert (named["method"], named["path"], named["request_id"]) == ("GET", "/hang", "stuck-1")
    stack = server.wait_for_log(lambda log: "hang" in log.get("stack", ""), message="the stuck thread's stack")
    assert stack["worker_pid"] == named["worker_pid"]
    stack_lines = [log for log in server.logs if "stack" in log]
    assert all(len(json.dumps(log)) < 10_000 for log in stack_lines), "a stack line is not capped"
    # The named worker's own death: under sync, the idle worker may time out too on a starved machine.
    server.wait_for_log(
        lambda log: log.get("worker_pid") == named["worker_pid"] and "timed out" in log.get("cause", ""),
        message="the named worker's death, timed out",
    )
    assert server.request("/pid")[0] == 200


def _watchdog_only(env: dict) -> dict:
    """Under sync workers, turn gunicorn's heartbeat timeout off: only the cluster's watchdog acts.

    A sync worker's heartbeat stops for a whole request, so gunicorn's own
    timeout (REQUEST_TIMEOUT there) bounds a long exchange (README); these
    tests are about what the watchdog counts.
    """
    return {**env, "GUNICORN_CMD_ARGS": "--timeout 0"} if WORKER_CLASS == "sync" else env


def test_streamed_answer_is_not_taken_for_a_stuck_request(serve):
    """The app's own work is timed, not the client's download: a slow stream outlives REQUEST_TIMEOUT."""
    server = serve(_watchdog_only({"WEB_CONCURRENCY": "1", "REQUEST_TIMEOUT": "4"}), app=FAULTY)
    status, _, body = server.request("/stream?chunks=12&pause=0.5")
    assert status == 200
    assert body.count(b"tick") == 12
    assert not [log for log in server.logs if "aborting it" in log.get("message", "")]


def test_slow_upload_is_not_taken_for_a_stuck_request(serve):
    """Waiting for the client's body is not the app's work either."""
    server = serve(_watchdog_only({"WEB_CONCURRENCY": "1", "REQUEST_TIMEOUT": "2"}), app=FAULTY)
    body = b'{"name": "' + b"x" * 40 + b'"}'
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as connection:
        connection.sendall(head + b"Content-Length: %d\r\n\r\n" % len(body))
        for start in range(0, len(body), 10):
            connection.sendall(body[start : start + 10])
            time.sleep(0.8)  # the client's pace, the thing under test
        answer = connection.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert not [log for log in server.logs if "aborting it" in log.get("message", "")]


def test_request_timeout_off(serve):
    server = serve({"WEB_CONCURRENCY": "1", "REQUEST_TIMEOUT": "0"}, app=FAULTY)
    assert server.request("/slow?seconds=2.5")[0] == 200
    assert not [log for log in server.logs if "aborting it" in log.get("message", "")]


def test_crash_loop_backs_off_then_exits_non_zero_at_any_log_level(serve):
    """The guard reads each worker's exit status from the process, never from log lines.

    One cluster per log level, side by side: each spends its time waiting out the back-off.
    """
    env = {"WEB_CONCURRENCY": "1", "GUNICORN_CMD_ARGS": "--preload"}
    servers = {
        level: serve({**env, "LOG_LEVEL": level}, app="railkit_tests.crashloop_app:app", wait=False)
        for level in ("debug", "info", "warning", "error")
    }
    for level, server in servers.items():
        assert server.wait_exit(timeout=90) == 1, level
        if level in ("debug", "info", "warning"):
            waits = [log for log in server.logs if log["message"].startswith("Workers keep dying young")]
            assert len(waits) >= 5, f"replacements were not spaced out at {level}"
            assert server.wait_for_log(lambda log: log.get("status") == "SIGSEGV")
        assert server.wait_for_log(message_starts("Stopping the cluster"))


def test_sigterm_during_crash_back_off_stops_at_once(serve):
    """Back-off is a deadline of the master's loop, not a sleep: a signal is handled on time."""
    env = {"WEB_CONCURRENCY": "1", "GUNICORN_CMD_ARGS": "--preload"}
    server = serve(env, app="railkit_tests.crashloop_app:app", wait=False)
    waiting = server.wait_for_log(lambda log: "waiting 1." in log.get("message", "") or "waiting 2." in log["message"])
    server.signal(signal.SIGTERM)
    assert server.wait_exit(timeout=5) == 0
    assert "waiting" in waiting["message"]


def test_app_that_fails_to_import_stops_the_start(serve):
    server = serve({}, app="railkit_tests.no_such_module:app", wait=False)
    assert server.wait_exit() != 0


def test_unhandled_exception_is_logged_with_traceback_but_hidden_from_client(serve):
    server = serve({"WEB_CONCURRENCY": "1"}, app=FAULTY)
    status, headers, body = server.request("/boom", headers={"X-Request-ID": "trace-me-42"})
    assert status == 500
    assert headers["Content-Type"] == "application/problem+json"
    assert b"secret internal detail" not in body
    logged = server.wait_for_log(lambda log: log.get("request_id") == "trace-me-42" and "exc_info" in log)
    assert "secret internal detail" in logged["exc_info"]


def test_uncaught_thread_exception_is_one_json_line(serve):
    server = serve({"WEB_CONCURRENCY": "1"}, app=FAULTY)
    assert server.request("/thread-crash")[0] == 200
    crash = server.wait_for_log(message_starts("Uncaught ZeroDivisionError"))
    assert crash["level"] == "error"
    assert "ZeroDivisionError" in crash["exc_info"]
    assert not [line for line in server.lines if line.startswith("Traceback")], "a raw traceback was printed"


def test_sighup_reload_replaces_workers_and_keeps_the_machinery(serve):
    server = serve({"WEB_CONCURRENCY": "2"}, app=FAULTY)
    before = server.wait_for_workers(2)
    server.signal(signal.SIGHUP)
    after = wait_until(lambda: (pids := server.worker_pids()) and len(pids) == 2 and not pids & before and pids)
    os.kill(sorted(after)[0], signal.SIGKILL)
    death = server.wait_for_log(lambda log: log.get("worker_pid") == sorted(after)[0] and "died" in log["message"])
    assert death["status"] == "SIGKILL"
    assert server.request("/pid")[0] == 200
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0


def test_any_wsgi_app_gets_the_cluster(serve):
    """`gunicorn othermodule:app` reads gunicorn.conf.py too: same sizing, logs and recovery."""
    server = serve({"WEB_CONCURRENCY": "2"}, app="railkit_tests.plain_wsgi:app", wait=False)
    victim = sorted(server.wait_for_workers(2))[0]
    assert server.request("/")[2] == b"plain wsgi"
    os.kill(victim, signal.SIGKILL)
    assert server.wait_for_log(lambda log: log.get("worker_pid") == victim and log.get("status") == "SIGKILL")
    server.wait_for_workers(2, without=victim)
    assert all(set(log) >= {"message", "level"} for log in server.logs)


def test_status_command_shows_every_worker(serve):
    server = serve({"WEB_CONCURRENCY": "2"})
    pids = server.wait_for_workers(2)
    for _ in range(3):
        server.request("/")
    table = server.status()
    assert "2 of 2 workers live" in table
    assert all(str(pid) in table for pid in pids)
    rows = json.loads(server.status("--json"))["workers"]
    assert sum(row["requests"] for row in rows) >= 3
    assert all(0 < row["uss_mib"] <= row["rss_mib"] for row in rows)
    assert "USS" in table and "RSS" in table


def test_status_tells_a_stopped_cluster_and_leaves_nothing_behind(serve):
    server = serve({"WEB_CONCURRENCY": "1"})
    base = Path(server.env["XDG_RUNTIME_DIR"])
    [folder] = base.glob("*-*")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
    assert not list(base.iterdir()), "the runtime folder outlived its master"
    finished = server.run_status()
    assert finished.returncode == 1
    assert "not running" in finished.stderr


def test_a_killed_masters_folder_is_ignored_then_cleared(serve):
    """A master killed outright leaves its folder: status calls it dead, the next start removes it."""
    first = serve({"WEB_CONCURRENCY": "1"})
    base = Path(first.env["XDG_RUNTIME_DIR"])
    [left_over] = base.iterdir()
    first.kill_outright()
    assert left_over.exists()
    assert first.run_status().returncode == 1
    second = serve({"WEB_CONCURRENCY": "1", "XDG_RUNTIME_DIR": str(base), "PORT": str(first.port)}, port=first.port)
    assert not left_over.exists()
    assert "1 of 1 workers live" in second.status()


def test_status_with_no_cluster_says_not_running_and_where_one_runs(serve, tmp_path):
    server = serve({"WEB_CONCURRENCY": "1"})
    finished = server.run_status("--port", str(free_port()))
    assert finished.returncode == 1
    assert "not running" in finished.stderr
    assert f"running on port {server.port}: pass --port {server.port}" in finished.stderr


def test_status_without_port_finds_the_only_cluster_on_another_port(serve):
    server = serve({"WEB_CONCURRENCY": "1"})
    server.wait_for_workers(1)
    env = {**server.env, "PORT": str(free_port())}
    command = [*CLUSTER_COMMAND, "status"]
    finished = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 0, finished.stderr
    assert "1 of 1 workers live" in finished.stdout


def test_runtime_files_never_follow_a_planted_symlink(serve, tmp_path):
    """Someone else on the host plants symlinks where the runtime folder might go: none is followed."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    base = Path(tempfile.mkdtemp(prefix="gunicorn-"))
    port = free_port()
    for name in (f"{PROJECT}-{port}", f"{PROJECT}-{port}-planted", "workers.board"):
        (base / name).symlink_to(victim)
    server = serve({"WEB_CONCURRENCY": "1", "XDG_RUNTIME_DIR": str(base), "PORT": str(port)}, port=port)
    assert "1 of 1 workers live" in server.status()
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
    assert victim.read_bytes() == b"precious"
    assert sorted(path.name for path in base.iterdir()) == sorted(
        [f"{PROJECT}-{port}", f"{PROJECT}-{port}-planted", "workers.board"]
    )


def test_taken_port_is_refused_with_one_json_line(serve):
    with socket.socket(socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET) as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("::" if squatter.family == socket.AF_INET6 else "0.0.0.0", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        server = serve({"WEB_CONCURRENCY": "1", "PORT": str(port)}, port=port, wait=False)
        assert server.wait_exit() == EXIT_BAD_CONFIG
    [refusal] = [log for log in server.logs if log["level"] == "error"]
    assert refusal["variable"] == "PORT"
    assert str(port) in refusal["address"]
    assert not [log for log in server.logs if "in use" in log["message"]]


def test_two_servers_on_one_host_do_not_clash(serve):
    first, second = serve({"WEB_CONCURRENCY": "1"}), serve({"WEB_CONCURRENCY": "1"})
    assert first.request("/health")[0] == second.request("/health")[0] == 200


def test_access_log_carries_the_request_id_and_skips_health(serve):
    server = serve({"WEB_CONCURRENCY": "1", "ACCESS_LOG": "all"})
    server.request("/", headers={"X-Railway-Request-Id": "edge-abc-123"})
    server.request("/health")
    line = server.wait_for_log(lambda log: log.get("path") == "/")
    assert line["request_id"] == "edge-abc-123"
    assert line["status"] == 200 and "duration_ms" in line
    assert not [log for log in server.logs if log.get("path") == "/health"]


def _new_connection(port: int, timeout: float) -> tuple[str, float]:
    """What a new client gets, and after how long: refused, an answer's status line, or silence."""
    started = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            outcome = sock.recv(65536).partition(b"\r\n")[0].decode() or "closed"
    except ConnectionRefusedError:
        outcome = "refused"
    except ConnectionResetError:
        outcome = "reset"
    except TimeoutError:
        outcome = "no answer"
    return outcome, time.monotonic() - started


def _listening(port: int) -> bool:
    return any(
        connection.status == psutil.CONN_LISTEN and connection.laddr.port == port
        for connection in psutil.net_connections("tcp")
    )


def test_new_connections_while_a_long_request_finishes_are_refused_at_once(serve):
    """A stopping worker lets go of the listening socket at once, so the kernel refuses new clients.

    A gthread (or sync) worker busy with a long request kept it open until it stopped, so new clients'
    SYNs went unanswered and they retried for as long (refused after 11.2 s; gevent's in 1.0 s).
    """
    server = serve({"WEB_CONCURRENCY": "2", "GRACEFUL_TIMEOUT": "30"}, app=FAULTY)
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(server.request, f"/slow?seconds={STOP_WAITS_SECONDS}")
        server.wait_for_log(lambda log: log.get("message") == "slow request started")
        server.signal(signal.SIGTERM)
        server.wait_for_log(message_starts("Stopping: new connections refused"), message="the drain's end")
        # Every process lets go of the socket once its signal handler runs: on a busy machine, a moment later.
        wait_until(lambda: not _listening(server.port), timeout=STOP_WAITS_SECONDS, message="no one listening")
        assert not busy.done(), "the socket was held until the long request ended"
        outcomes = []
        for _ in range(4):
            outcomes.append(_new_connection(server.port, timeout=2))
            time.sleep(0.25)
        assert busy.result()[0] == 200
    assert server.wait_exit() == 0
    print(outcomes)
    # A SYN dropped while the master still drained the accept queue is retried after 1 s, and refused then.
    assert all(outcome == "refused" and took < 1.5 for outcome, took in outcomes), outcomes


@pytest.mark.parametrize(
    "command",
    [[*CLUSTER_COMMAND, "serve", FIXTURE_APP], [str(Path(sys.executable).with_name("gunicorn")), FIXTURE_APP]],
    ids=["python -m railkit.cluster serve", "gunicorn"],
)
def test_sigusr2_starts_a_new_master_that_serves_once_the_old_one_stops(serve, command):
    """gunicorn's binary upgrade: a new master, then the old one stops and the new one serves on.

    `serve` set sys.argv[0] to "gunicorn", which the new master could not run; and the old master's
    drain, on the sockets both share, left the new one deaf.
    """
    server = serve({"WEB_CONCURRENCY": "1"}, command=command)
    old = server.process.pid
    try:
        server.signal(signal.SIGUSR2)
        started = server.wait_for_log(lambda log: "Master process starting" in log["message"] and log["pid"] != old)
        new = started["pid"]
        server.wait_for_log(lambda log: log.get("worker_pid") and log["pid"] != old and "started" in log["message"])
        server.signal(signal.SIGTERM)
        assert server.process.wait(30) == 0  # the new master holds the log pipe: no waiting for its end
        assert psutil.pid_exists(new)
        answers = [_new_connection(server.port, timeout=10)[0] for _ in range(10)]
        assert answers == ["HTTP/1.1 200 OK"] * 10, answers
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(old, signal.SIGKILL)
