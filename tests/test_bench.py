"""The bench measures and parses correctly; a tiny run, never a check of speed."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

from .bench.load import LoadResult, parse_wrk
from .bench.scenarios import Run, _summary
from .support import ROOT, TEMPLATE, missing

WRK_OUTPUT = """\
Running 1s test @ http://127.0.0.1:8140/io
  2 threads and 200 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   520.02ms  166.00ms   1.84s    86.73%
    Req/Sec    12.28      6.00    30.00     72.73%
  Latency Distribution
     50%  519.40ms
     75%  600.27ms
     90%  800.26ms
     99%    1.84s
  392 requests in 20.10s, 1.67MB read
  Socket errors: connect 3, read 7, write 0, timeout 112
  Non-2xx or 3xx responses: 5
Requests/sec:     19.50
Transfer/sec:      1.52MB
"""


def test_parse_wrk_reads_every_figure():
    result = parse_wrk(WRK_OUTPUT)
    assert result.requests == 392
    assert result.rps == 19.5
    assert (result.errors, result.timeouts, result.non_2xx) == (10, 112, 5)
    assert result.p50_ms == 519.4
    assert result.p99_ms == 1840.0


def test_parse_wrk_without_errors():
    clean = "\n".join(line for line in WRK_OUTPUT.splitlines() if "errors" not in line and "Non-2xx" not in line)
    result = parse_wrk(clean)
    assert (result.errors, result.timeouts, result.non_2xx) == (0, 0, 0)


def test_ratios_to_bare_pair_each_round():
    """Each round's ratio is to bare gunicorn's run of the same round: a slow round weighs on both sides."""

    def run(rps, server_cpu_s=1.0):
        return Run(LoadResult(round(rps * 5), rps, 0, 0, 0, 1.0, 2.0, wrk_cpu_s=0.5), 5.0, server_cpu_s, 0.1)

    samples = {
        "bare gunicorn": [run(1000), run(500), run(1000)],  # the second round ran on a busy machine
        "cluster": [run(1800), run(900), run(1500, server_cpu_s=2.0)],
    }
    cluster = _summary(samples)["cluster"]
    assert cluster["vs_bare"] == [1.8, 1.5, 1.8]  # median, min, max of 1.8, 1.8 and 1.5
    assert (cluster["rps"], cluster["rps_min"], cluster["rps_max"], cluster["rounds"]) == (1500, 900, 1800, 3)
    assert cluster["us_per_request"] == round(1.0 / 4500 * 1e6)  # the median of 111, 222 and 267 us
    assert (cluster["server_cores"], cluster["wrk_cores"], cluster["others_cores_max"]) == (0.2, 0.1, 0.02)
    assert "vs_bare" not in _summary(samples)["bare gunicorn"]


def test_smoke_bench_run_measures_everything(tmp_path):
    """`python -m tests.bench --smoke` runs every scenario at its smallest and writes its tables, JSON and chart.

    It checks that the bench runs and reports, never a figure: it runs at a lower CPU priority (nice 5), and takes no
    load slot (load_slots.py). Holding one for its two minutes and more, it kept the suites' load tests waiting,
    all of them while a test that runs alone waited for that slot.
    """
    if shutil.which("wrk") is None:
        missing("wrk is not installed: `make bench` or `make test` installs it (apt-get install wrk)")
    run = subprocess.run(
        ["nice", "-n", "5", sys.executable, "-m", "tests.bench", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    previous = TEMPLATE["python_version"][1]
    contenders = {"bare gunicorn", "flask run", "gunicorn gthread (no cluster)"}
    contenders |= {"cluster (gthread)", "cluster (gevent)", "cluster (sync)", "cluster (granian)"}
    if "node_skipped" not in results:
        contenders.add("node (express cluster)")
    for by_server in results["throughput"].values():
        assert set(by_server) == contenders
        assert all(run["requests"] > 0 and run["us_per_request"] > 0 for run in by_server.values())
        assert all(run["server_cores"] > 0 and run["wrk_cores"] > 0 for run in by_server.values())
        assert by_server["cluster (gthread)"]["vs_bare"][0] > 0
    if "skipped" not in results["database"]:
        database = results["database"]["servers"]
        expected = {"bare gunicorn", "cluster (gthread)", "cluster via PgBouncer", "cluster (granian)"}
        assert set(database) == expected | (contenders & {"node (express cluster)"})
        assert all(run["requests"] > 0 and run["us_per_request"] > 0 for run in database.values())
        assert database["cluster (gthread)"]["vs_bare"][0] > 0
    assert results["sizing"]["rows"][0]["cpu_rps"] > 0 and results["sizing"]["rows"][0]["io_rps"] > 0
    # gthread on the default Python and on the one before it, each with the Python it ran on.
    for key, python in (("gthread", TEMPLATE["python_version"][0]), (f"gthread, Python {previous}", previous)):
        by_workers = results["memory"][key]["by_workers"]
        assert by_workers["2"]["pss_mb"] > by_workers["1"]["pss_mb"] > 0
        assert results["memory"][key]["python"].startswith(f"{python}.")
    layers = results["layers"]["us_per_request"]
    layer_names = ("security", "request_log", "problems", "ratelimit", "metrics", "bodies")
    assert set(layers) == {"bare Flask", *(f"+ {name}" for name in layer_names), "generated app"}
    assert all(micros > 0 for micros in layers.values())
    assert results["metrics"]["on_rps"] > 0 and results["metrics"]["off_rps"] > 0
    tracing = results["tracing"]["runs"]
    assert set(tracing) == {"off", "every request", "1% sampled"}
    assert all(run["rps"] > 0 and run["us_per_request"] > 0 for run in tracing.values())
    assert set(results["attacks"]) == {
        "slow headers",
        "silent connections",
        "body bombs",
        "log flood",
        "unsent bodies under the gate",
        "slow readers of 8 MB",
        "6,000 clients idle after one request",
    }
    for name in ("cluster (gthread)", "cluster (granian)"):
        users = results["users"][name]
        assert users["requests"] > 0 and 0 <= users["first_try"] <= 1 and users["worker_crashes"] == 0
        assert results["memory"][name.removeprefix("cluster (").removesuffix(")")]["by_workers"]["2"]["pss_mb"] > 0
    for by_server in results["attacks"].values():
        assert 0 <= by_server["cluster (gthread)"]["health_answered"] <= 1
        assert by_server["cluster (gthread)"]["probes"] > 0
    if "skipped" not in results["redeploy"]:
        (by_server,) = results["redeploy"].values()
        assert by_server["cluster (gthread)"]["requests"] > 0
    assert results["chaos"]["kills"] >= 1 and 0 <= results["chaos"]["success_ratio"] <= 1
    assert results["graceful_stop"]["exit_code"] == 0
    assert results["startup"]["cluster (gthread)"] > 0
    flame = results["flame"]
    assert "skipped" in flame or "<svg" in Path(flame["svg"]).read_text()
    assert (tmp_path / "chart.png").read_bytes().startswith(b"\x89PNG")
    printed_sections = ("concurrent users", "vs bare", "sizing sweep", "per extra worker", "vs bare Flask", "database")
    for printed in (*printed_sections, "/health ok", "graceful stop"):
        assert printed in run.stdout
    assert "| claim | goal | measured | |" in run.stdout
