"""The platform's own tests, on an app of their own (fixture_app.py), never the owner's routes.

They run from a rendered project's root, which holds the platform as the project receives it
(the template's tests/support.py: run_platform_tests).

Fixtures: `app` -> `client` for the fast tests, `serve` for real gunicorn clusters,
`server` for one cluster a whole module shares.

In CI a skipped test fails (ci_skips.py, loaded by the runner). A test of
one worker class's behaviour is marked `worker_class(...)` and is deselected,
not skipped, in projects of another class; so is a test of one server's
behaviour, marked `server(...)`, in projects of the other (GUNICORN_ONLY
marks the tests of gunicorn's own machinery, written before granian was offered).
"""

from pathlib import Path

import pytest

if not Path("railkit.json").exists():
    pytest.exit("run the platform's suite from a rendered project's root (tests/support.py: run_platform_tests)", 4)

from railkit import project

from . import servers
from .fixture_app import create_app
from .servers import FIXTURE_APP, Server

# The end of each server's log that a failed test's report shows (the template keeps 60,000 characters of a
# suite's failures: tests/test_platform.py).
LOG_IN_A_FAILURE = 4000

# Modules whose behaviour does not depend on the worker class: the template runs them in its
# default-class project only (`-m "not same_for_every_worker_class"` elsewhere).
SAME_FOR_EVERY_WORKER_CLASS = {
    "test_app",
    "test_gunicorn_conf",
    "test_import_graph",
    "test_metrics",
    "test_owner_api",
    "test_owner_hooks",
    "test_ratelimit",
    "test_sentry",
    "test_settings",
    "test_sizing",
}

# Tests of gunicorn's master alone (its signals, back-off, runtime files, status command), by module and test
# name: the template runs them in its default-class project, and a granian project runs them against its own.
SAME_FOR_EVERY_GUNICORN_WORKER_CLASS = {
    "test_cluster": {
        "test_crash_loop_backs_off_then_exits_non_zero_at_any_log_level",
        "test_sigterm_during_crash_back_off_stops_at_once",
        "test_app_that_fails_to_import_stops_the_start",
        "test_ttin_and_ttou_change_the_worker_count",
        "test_status_command_shows_every_worker",
        "test_status_tells_a_stopped_cluster_and_leaves_nothing_behind",
        "test_a_killed_masters_folder_is_ignored_then_cleared",
        "test_status_with_no_cluster_says_not_running_and_where_one_runs",
        "test_status_without_port_finds_the_only_cluster_on_another_port",
        "test_runtime_files_never_follow_a_planted_symlink",
        "test_taken_port_is_refused_with_one_json_line",
        "test_two_servers_on_one_host_do_not_clash",
        "test_sigusr2_starts_a_new_master_that_serves_once_the_old_one_stops",
    },
}

# Tests of what only gunicorn does, by module (None: all of it) and test name (or one parameter's full name):
# its configuration file, its internals, its worker classes' own readers and writers, its signals and
# command-line options. A granian project runs its own tests of the same promises (test_granian*.py), and the
# README says where they differ.
GUNICORN_ONLY = {
    "test_gunicorn_compat": None,
    "test_gunicorn_conf": None,
    "test_owner_hooks": None,
    "test_fallbacks": None,
    "test_connections": None,
    "test_framing": {
        "test_broken_chunked_framing_is_a_400_problem_without_traceback",
        "test_chunk_size_beyond_the_body_limit_is_a_413_at_once",
        "test_a_transfer_coding_other_than_chunked_is_a_501_problem[gzip]",  # hyper's own 400
    },
    "test_cluster": {
        "test_a_stop_while_a_worker_boots_stops_it_once_booted",
        "test_sigterm_also_serves_connections_still_queued",
        "test_master_keeps_reaping_and_replacing_while_it_drains",
        "test_sigusr2_starts_a_new_master_that_serves_once_the_old_one_stops",
        # granian's workers keep the listener until they stop: new clients get no answer, not a refusal.
        "test_new_connections_while_a_long_request_finishes_are_refused_at_once",
    },
    "test_hostile": {
        "test_slow_and_silent_clients_do_not_starve_health",
        "test_slow_head_gets_a_408_problem_within_the_deadline",
        "test_slow_body_gets_a_408_problem_not_a_worker_abort",
        "test_log_flood_is_summed_within_railways_rate_and_lifecycle_lines_stay",
    },
    "test_http": {
        "test_too_many_headers_is_a_431_problem",
        "test_malformed_request_line_is_a_400_problem",
        "test_keep_alive_connection_is_closed_after_its_quota",
        "test_a_kept_alive_head_that_arrives_in_parts_is_served",
        "test_kept_alive_connections_take_turns",
        "test_a_head_trickling_in_right_after_an_answer_gets_a_408_within_the_deadline",
        # Heads over granian's 64 KB buffer get hyper's own 431, with an empty body.
        "test_headers_over_the_edges_32_kb_in_all_are_a_431_problem[99-headers-of-8000-bytes]",
        "test_a_refused_head_still_on_its_way_is_answered_and_closed_cleanly[414]",
    },
    # X-Forwarded-Ssl is gunicorn's own (secure_scheme_headers); the app reads X-Forwarded-Proto.
    "test_client_address": {"test_a_local_ipv4_proxy_is_trusted_by_gunicorn_and_the_app"},
    "test_answers": {
        "test_a_declared_body_the_app_does_not_read_closes_the_connection_with_one_answer",
        "test_a_client_that_reads_nothing_is_cut_after_the_write_deadline",
        "test_no_100_continue_for_a_body_that_is_refused",
        "test_slow_readers_of_files_do_not_starve_health",
    },
    "test_database": {"test_a_reload_is_budgeted_again_and_refused_when_it_cannot_fit"},  # gunicorn.conf.py re-read
}

# The database's tests need its packages and a Postgres server: only projects generated with Postgres run them.
if not project.HAS_DATABASE:
    collect_ignore_glob = ["test_database*.py", "fixture_db_app.py"]


def pytest_configure(config):
    config.addinivalue_line("markers", "worker_class(*names): a behaviour of these worker classes only")
    config.addinivalue_line("markers", "same_for_every_worker_class: run in one worker class's project only")
    config.addinivalue_line(
        "markers", "same_for_every_gunicorn_worker_class: gunicorn's master alone, run in one gunicorn project"
    )
    config.addinivalue_line("markers", "server(*names): a behaviour of these HTTP servers only (gunicorn, granian)")
    config.addinivalue_line("markers", "cluster: starts real server processes (slower)")
    config.addinivalue_line("markers", "use_tracing(answer): in projects generated with this use_tracing only")


def pytest_collection_modifyitems(config, items):
    """Leave out the tests of another worker class's, server's or use_tracing's behaviour: this project has one."""
    kept, other = [], []
    for item in items:
        module = item.module.__name__.rpartition(".")[2]
        if module in SAME_FOR_EVERY_WORKER_CLASS:
            item.add_marker("same_for_every_worker_class")
        if item.originalname in SAME_FOR_EVERY_GUNICORN_WORKER_CLASS.get(module, ()):
            item.add_marker("same_for_every_gunicorn_worker_class")
        only = GUNICORN_ONLY.get(module, ())
        if module in GUNICORN_ONLY and (only is None or item.originalname in only or item.name in only):
            item.add_marker(pytest.mark.server("gunicorn"))
        worker_class, server = item.get_closest_marker("worker_class"), item.get_closest_marker("server")
        tracing = item.get_closest_marker("use_tracing")
        another_class = worker_class and project.WORKER_CLASS not in worker_class.args
        another_server = server and project.SERVER not in server.args
        another_tracing = tracing and tracing.args[0] != ("yes" if project.HAS_TRACING else "no")
        (other if another_class or another_server or another_tracing else kept).append(item)
    if other:
        config.hook.pytest_deselected(items=other)
        items[:] = kept


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    servers.STARTED.clear()  # each test's own: the servers of tests that passed are not kept for their logs
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test's report ends with the log of every server it used: a timing failure is read at once."""
    report = yield
    if report.failed:
        shared = [value for value in getattr(item, "funcargs", {}).values() if isinstance(value, Server)]
        for server in dict.fromkeys([*shared, *servers.STARTED]):
            log = "".join(server.lines)[-LOG_IN_A_FAILURE:]
            report.sections.append((f"server on port {server.port}, the end of its log", log))
    return report


@pytest.fixture
def app(monkeypatch):
    """An app built from a clean environment, in testing mode."""
    for name in ("REDIS_URL", "RATE_LIMIT", "ENABLE_CLUSTERING", "WEB_CONCURRENCY", "RAILWAY_PLAN"):
        monkeypatch.delenv(name, raising=False)
    return create_app({"TESTING": True})


@pytest.fixture
def client(app):
    """A test client for the app."""
    return app.test_client()


@pytest.fixture
def serve():
    """Start real servers (this project's: gunicorn or granian) from the project root; all are stopped afterwards."""
    started = []

    def start(env=None, app=FIXTURE_APP, command=None, wait=True, port=None):
        server = Server(env or {}, app=app, command=command, port=port)
        started.append(server)
        if wait:
            server.wait_healthy()
        return server

    yield start
    for server in started:
        server.kill()


@pytest.fixture(scope="module")
def server():
    """One small cluster for the whole module, on the free plan's 1 MB body limit, logging every request.

    Not rate limited: its modules send more than the free plan's 60 a minute (test_ratelimit.py tests the limit).
    """
    running = Server({"WEB_CONCURRENCY": "2", "RAILWAY_PLAN": "free", "ACCESS_LOG": "all", "RATE_LIMIT": "off"})
    running.wait_healthy()
    yield running
    running.kill()
