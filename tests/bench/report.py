"""The bench's figures as tables on stdout, a goals table, a JSON file and a PNG chart."""

import json
from pathlib import Path

from .scenarios import QUIET_CORES
from .servers import PLAIN_GTHREAD

BASELINE = "bare gunicorn"
# The project generated with server=granian (issue 34), as the bench names its cluster.
GRANIAN = "cluster (granian)"
NODE = "node (express cluster)"


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base else "-"


def _times(value) -> str:
    return f"{value:.2f}x" if value is not None else "-"


def _cores(value) -> str:
    return f"{value:.2f}" if value is not None else "-"


def _ms(value) -> str:
    return f"{value:.1f}" if value is not None else "-"


def table(results: dict) -> str:
    """Every figure of the run, section by section (sections not run are left out)."""
    lines = [f"machine: {results['machine']}; profile {results['profile']}", ""]
    if "node_skipped" in results:
        lines += [f"node: skipped ({results['node_skipped']})", ""]
    for name, render in SECTIONS.items():
        if name in results:
            lines += render(results[name])
            lines.append("")
    return "\n".join(lines).rstrip()


def _vs_bare(run: dict, base: float) -> float:
    """The median of the rounds' ratios to bare gunicorn; the ratio of medians for runs recorded without it."""
    if "vs_bare" in run:
        return run["vs_bare"][0]
    return run["rps"] / base if base else float("nan")  # nan: bare served nothing, no ratio


def _throughput(figures: dict) -> list[str]:
    lines = []
    for load, by_server in figures.items():
        base = by_server[BASELINE]["rps"]
        rounds = by_server[BASELINE].get("rounds", 1)
        title = f"{load} ({rounds} round{'s' if rounds > 1 else ''})"
        lines.append(
            f"{title:<34} {'req/s':>6} {'min-max':>11} {'vs bare':>7} {'min-max':>9} "
            f"{'errors':>6} {'timeouts':>8} {'p50 ms':>7} {'p99 ms':>7} {'CPU us/req':>10} {'cores':>5} {'wrk':>5}"
        )
        for name, run in by_server.items():
            spread = f"{run['rps_min']:.0f}-{run['rps_max']:.0f}" if "rps_min" in run else "-"
            ratio_spread = f"{run['vs_bare'][1]:.2f}-{run['vs_bare'][2]:.2f}" if "vs_bare" in run else "-"
            lines.append(
                f"  {name:<32} {run['rps']:>6.0f} {spread:>11} {_times(_vs_bare(run, base)):>7} {ratio_spread:>9} "
                f"{run['errors'] + run['non_2xx']:>6} {run['timeouts']:>8} {_ms(run['p50_ms']):>7} "
                f"{_ms(run['p99_ms']):>7} {run.get('us_per_request', '-'):>10} {_cores(run.get('server_cores')):>5} "
                f"{_cores(run.get('wrk_cores')):>5}"
            )
        if "others_cores_max" in by_server[BASELINE]:
            quiet = {
                "others_cores_max": max(run["others_cores_max"] for run in by_server.values()),
                "repeated_runs": sum(run["repeated_runs"] for run in by_server.values()),
            }
            lines.append(
                "  (vs bare: median of the rounds' ratios, each to bare gunicorn's run in the same round; CPU us/req "
                f"and cores: the server's processes; wrk: the load generator's cores; {_quiet(quiet)})"
            )
        lines.append("")
    return lines[:-1]


def _quiet(runs: dict) -> str:
    """How quiet the machine was: other processes' cores during a kept run, and the disturbed runs made again."""
    if runs.get("others_cores_max") is None:
        return "other processes' CPU not measured"
    return (
        f"other processes used at most {runs['others_cores_max']:.2f} cores during a kept run (~0.02 on a quiet "
        f"machine), {runs['repeated_runs']} disturbed runs made again"
    )


def _ratio_of(run: dict, key: str) -> str:
    """A paired median ratio ("vs_bare", "vs_node") with its spread over the rounds, or "-"."""
    if key not in run:
        return "-"
    median, low, high = run[key]
    return f"{median:.2f}x ({low:.2f}-{high:.2f})" if low != high else f"{median:.2f}x"


def _database(figures: dict) -> list[str]:
    if "skipped" in figures:
        return [f"database: skipped ({figures['skipped']})"]
    by_server = figures["servers"]
    rounds = by_server[BASELINE].get("rounds", 1)
    title = (
        f"database: GET /db/<id>, one SELECT by primary key of {figures['rows']:,} rows (Postgres "
        f"{figures['postgres']}), {figures['connections']} connections, {rounds} round{'s' if rounds > 1 else ''}"
    )
    lines = [
        title,
        f"  {'server':<24} {'req/s':>6} {'min-max':>11} {'vs bare':>17} {'vs node':>17} {'errors':>6} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'CPU us/req':>10} {'cores':>5} {'postgres':>8}",
    ]
    for name, run in by_server.items():
        spread = f"{run['rps_min']:.0f}-{run['rps_max']:.0f}"
        errors = run["errors"] + run["timeouts"] + run["non_2xx"]
        lines.append(
            f"  {name:<24} {run['rps']:>6.0f} {spread:>11} {_ratio_of(run, 'vs_bare'):>17} "
            f"{_ratio_of(run, 'vs_node'):>17} {errors:>6} {_ms(run['p50_ms']):>7} {_ms(run['p99_ms']):>7} "
            f"{run['us_per_request']:>10} {_cores(run['server_cores']):>5} {_cores(run.get('postgres_cores')):>8}"
        )
    lines.append(
        "  (ratios: median of the rounds' ratios, min-max; errors: socket errors, timeouts and non-2xx answers; "
        f"CPU us/req and cores: the server's processes; postgres: the cores Postgres used serving them; "
        f"{_quiet(_quietest(by_server))})"
    )
    return lines


def _quietest(by_server: dict) -> dict:
    """How quiet the machine was over every server's runs."""
    return {
        "others_cores_max": max(run["others_cores_max"] for run in by_server.values()),
        "repeated_runs": sum(run["repeated_runs"] for run in by_server.values()),
    }


def _sizing(sweep: dict) -> list[str]:
    lines = [
        f"sizing sweep on {sweep['cpus']} CPUs (one run per cell, alternated with bare gunicorn and flask run; "
        f"ratios to their medians: {sweep.get('bare_cpu_rps') or 0:.0f} and "
        f"{sweep.get('flask_io_rps') or 0:.0f} req/s; bare's CPU per request "
        f"{sweep.get('bare_cpu_us_per_request') or '-'} us)",
        "  one run moves a cell's ratio by about +-10%: the sweep ranks the cells, the throughput table's "
        f"rounds measure the default; {_quiet(sweep)}",
        f"  {'class':<8} {'rule':<9} {'workers':>7} {'threads':>7} {'cpu req/s':>9} {'vs bare':>7} {'us/req':>6} "
        f"{'cpu p99':>8} {'io req/s':>8} {'vs flask':>8} {'io p99':>8} {'io errors':>9}",
    ]
    for row in sweep["rows"]:
        lines.append(
            f"  {row['worker_class']:<8} {row['rule']:<9} {row['workers']:>7} {row['threads']:>7} {row['cpu_rps']:>9} "
            f"{_times(row['cpu_vs_bare']):>7} {row.get('cpu_us_per_request', '-'):>6} {_ms(row['cpu_p99_ms']):>8} "
            f"{row['io_rps']:>8} {_times(row['io_vs_flask']):>8} {_ms(row['io_p99_ms']):>8} {row['io_errors']:>9}"
        )
    return lines


def _memory(memory: dict) -> list[str]:
    lines = [f"{'memory (PSS after load)':<26} {'workers':>7} {'PSS MB':>8}  worker USS MB (requests served)"]
    for worker_class, figures in memory.items():
        if worker_class == BASELINE:
            lines.append(f"  {'bare gunicorn (1 sync)':<24} {1:>7} {figures['pss_mb']:>8.1f}")
            continue
        name = _memory_label(worker_class, figures)
        for count, row in figures["by_workers"].items():
            served = f" ({row['worker_requests']})" if "worker_requests" in row else ""
            lines.append(f"  {name:<24} {count:>7} {row['pss_mb']:>8.1f}  {row['worker_uss_mb']}{served}")
        lines.append(
            f"  {name}: {figures['per_extra_worker_mb']} MB per extra worker "
            f"({figures['per_extra_worker_share']:.0%} of the smallest cluster)"
        )
    return lines


def _memory_label(key: str, figures: dict) -> str:
    """The worker class and the Python it ran on, e.g. "gthread, Python 3.14.2" (the key, in runs recorded without)."""
    return f"{figures['worker_class']}, Python {figures['python']}" if figures.get("python") else key


def _layers(layers: dict) -> list[str]:
    lines = ["CPU per /cpu request, in-process (median of alternated runs)"]
    for name, micros in layers["us_per_request"].items():
        cost = layers["cost_vs_bare"].get(name)
        lines.append(f"  {name:<24} {micros:>8.0f} us" + (f"  {cost:+.0%} vs bare Flask" if cost is not None else ""))
    return lines


def _metrics(metrics: dict) -> list[str]:
    cost = f"{metrics['cost']:+.1%}" if metrics["cost"] is not None else "-"
    return [
        f"metrics cost on /cpu, 16 connections: on {metrics['on_rps']} req/s, off {metrics['off_rps']} req/s: "
        f"cost {cost} ({metrics['note']})"
    ]


def _tracing(tracing: dict) -> list[str]:
    if "skipped" in tracing:
        return [f"traces: skipped: {tracing['skipped']}"]
    runs = tracing["runs"]
    lines = [f"traces on {tracing['route']} ({tracing['exports']} exports received):"]
    for state, run in runs.items():
        versus = f"  {run['vs_off']:.2f}x off, {run['extra_us_per_request']:+d} us CPU" if "vs_off" in run else ""
        lines.append(f"  {state:<14} {run['rps']:>7} req/s {run['us_per_request']:>6} us CPU per request{versus}")
    return lines


def _attacks(attacks: dict) -> list[str]:
    lines = [
        f"{'attack':<26} {'/health ok':>10} {'peak PSS':>9} {'cgroup peak':>11} {'OOM kills':>9} "
        f"{'log lines/s':>11} {'peak':>6}  what the attacker saw"
    ]
    for attack, by_server in attacks.items():
        lines.append(f"  {attack}")
        for name, row in by_server.items():
            cgroup = row.get("cgroup") or {}
            seen = {
                key: value
                for key, value in row.items()
                if key
                in ("cut_by_server", "outcomes", "malformed_requests", "connections", "body_mb", "first_answered_share")
            }
            lines.append(
                f"    {name:<22} {row['health_answered']:>10.1%} {row['peak_pss_mb']:>8.0f}M "
                f"{str(cgroup.get('peak_mb', '-')) + 'M':>11} {cgroup.get('oom_kills', '-'):>9} "
                f"{row['log_lines_per_s']:>11} {row['peak_log_lines_per_s']:>6}  {seen}"
            )
    return lines


def _users(by_server: dict) -> list[str]:
    lines = ["concurrent users: kept-alive clients asking /health every few seconds; servers under 1,024 open files"]
    for name, row in by_server.items():
        lines.append(
            f"  {name:<24} {row['users']} users: {row['first_try']:.2%} of {row['requests']} answered on the first try "
            f"(failures {row['failures']}; {row['closed_with_connection_close']} closed by `Connection: close`); "
            f"/health {row['health_answered']:.1%}; {row['worker_crashes']} worker crashes"
        )
    return lines


def _redeploy(redeploys: dict) -> list[str]:
    if "skipped" in redeploys:
        return [f"redeploy through nginx: skipped ({redeploys['skipped']})"]
    lines = ["redeploy through nginx (keep-alive pool, 64 connections on /io)"]
    for order, by_server in redeploys.items():
        for name, row in by_server.items():
            lines.append(
                f"  {order:<30} {name:<18} {row['failed']:>5} of {row['requests']:>6} failed "
                f"({row['timeouts']} timeouts); old exit {row['old_exit_code']} "
                f"{'after ' + str(row['old_exit_seconds']) + 's' if row['old_exit_seconds'] is not None else 'forced'}"
            )
    return lines


def _chaos(chaos: dict) -> list[str]:
    return [
        f"chaos: {chaos['kills']} workers SIGKILLed under load; {chaos['success_ratio']:.2%} of "
        f"{chaos['requests']} requests succeeded; replacement serving in {chaos['replacement_serving_s']['median']}s "
        f"(median), {chaos['replacement_serving_s']['max']}s (max)"
    ]


def _stop(stop: dict) -> list[str]:
    return [
        f"graceful stop: SIGTERM under load; {stop['answered']} answered, {stop['dropped_after_accept']} dropped "
        f"after being accepted, exit {stop['exit_code']} after {stop['exit_seconds']}s"
    ]


def _startup(startup: dict) -> list[str]:
    return [
        f"startup to first /health 200: bare {startup[BASELINE]}s, cluster {startup['cluster (gthread)']}s "
        f"({ratio(startup['cluster (gthread)'], startup[BASELINE])})"
    ]


def _flame(flame: dict) -> list[str]:
    return [f"flame graph: {flame.get('svg') or 'skipped: ' + flame['skipped']}"]


SECTIONS = {
    "throughput": _throughput,
    "database": _database,
    "sizing": _sizing,
    "memory": _memory,
    "layers": _layers,
    "metrics": _metrics,
    "users": _users,
    "attacks": _attacks,
    "redeploy": _redeploy,
    "chaos": _chaos,
    "graceful_stop": _stop,
    "startup": _startup,
    "flame": _flame,
    "tracing": _tracing,
}


# The red team's attacks of issue 27, whose goals add no worker crashes (and every first request answered).
ISSUE_27_ATTACKS = ("unsent bodies under the gate", "slow readers of 8 MB", "6,000 clients idle after one request")


def goals(results: dict) -> str:
    """Each goal of the issues, and what this run measured: met, missed, or not measured."""
    rows = []

    def add(claim, goal, measured, met):
        rows.append((claim, goal, measured, "-" if met is None else "met" if met else "MISSED"))

    throughput = results.get("throughput", {})

    def rps(load, name):
        return throughput.get(load, {}).get(name, {}).get("rps")

    cpu, io200, io1000 = "cpu, 16 connections", "io, 200 connections", "io, 1000 connections"
    if cpu in throughput:
        base = rps(cpu, BASELINE)
        bare, default = throughput[cpu][BASELINE], throughput[cpu]["cluster (gthread)"]
        gthread = _vs_bare(default, base)
        measured = f"{gthread:.2f}x"
        if "vs_bare" in default:
            measured += (
                f" (median of {default['rounds']} paired rounds, "
                f"{default['vs_bare'][1]:.2f}-{default['vs_bare'][2]:.2f}; "
                f"CPU per request {default['us_per_request']} vs {bare['us_per_request']} us on "
                f"{default['server_cores']:.2f} vs {bare['server_cores']:.2f} cores)"
            )
            disturbed = max(default["others_cores_max"], bare["others_cores_max"])
            if disturbed > QUIET_CORES:
                measured += f"; DISTURBED: other processes used up to {disturbed:.2f} cores during a run"
        add("CPU-bound, 16 connections (default gthread)", ">= 1.8x bare", measured, gthread >= 1.8)
        others = ", ".join(
            f"{name} {_vs_bare(run, base):.2f}x"
            for name, run in throughput[cpu].items()
            if name.startswith("cluster (g") or "sync" in name
        )
        add("CPU-bound, 16 connections, each class", "(for reading)", others, None)
        plain = throughput[cpu].get(PLAIN_GTHREAD)
        if plain:
            add(
                "gthread's ceiling here: gunicorn gthread, same sizing, no cluster",
                "(for reading)",
                f"{_vs_bare(plain, base):.2f}x bare; CPU per request {plain['us_per_request']} us",
                None,
            )
    if io200 in throughput:
        gthread, flask = rps(io200, "cluster (gthread)"), rps(io200, "flask run")
        add("I/O 50 ms, 200 connections (default gthread)", ">= flask run",
            f"{gthread:.0f} vs {flask:.0f} req/s ({gthread / flask:.2f}x; {gthread / rps(io200, BASELINE):.0f}x bare)",
            gthread >= flask)  # fmt: skip
    if io1000 in throughput:
        run = throughput[io1000]["cluster (gevent)"]
        errors = run["errors"] + run["timeouts"] + run["non_2xx"]
        times = _vs_bare(run, rps(io1000, BASELINE))
        add("I/O 50 ms, 1000 connections (gevent)", ">= 100x bare, 0 errors", f"{times:.0f}x, {errors} errors",
            times >= 100 and errors == 0)  # fmt: skip
    for load in (cpu, io1000):
        node = rps(load, NODE)
        if node:
            run = throughput[load]["cluster (gevent)"]
            errors = run["errors"] + run["timeouts"] + run["non_2xx"]
            share = run["vs_node"][0] if "vs_node" in run else run["rps"] / node
            add(f"gevent vs Node, {load}", ">= 50% of Node" + (", 0 errors" if load == io1000 else ""),
                f"{run['rps']:.0f} vs {node:.0f} req/s (paired median {share:.1%}), {errors} errors",
                share >= 0.5 and (load == cpu or errors == 0))  # fmt: skip
    for load, by_server in throughput.items():
        granian, cluster = by_server.get(GRANIAN), by_server.get("cluster (gthread)")
        if granian and cluster:
            errors = granian["errors"] + granian["timeouts"] + granian["non_2xx"]
            node = by_server.get(NODE, {}).get("rps")
            measured = f"{granian['rps']:.0f} vs {cluster['rps']:.0f} req/s ({granian['rps'] / cluster['rps']:.2f}x)"
            measured += (f", {granian['rps'] / node:.0%} of Node" if node else "") + f", {errors} errors"
            add(f"granian vs the gunicorn cluster (gthread), {load}", "(for reading: issue 34)", measured, None)
    database = results.get("database", {}).get("servers")
    if database:
        errors = {name: run["errors"] + run["timeouts"] + run["non_2xx"] for name, run in database.items()}
        times, failed = _vs_bare(database["cluster (gthread)"], database[BASELINE]["rps"]), errors["cluster (gthread)"]
        add("database, one SELECT by primary key (default gthread)", ">= bare, 0 errors",
            f"{times:.2f}x bare, {failed} errors", times >= 1 and not failed)  # fmt: skip
        others = ", ".join(
            f"{name} {_vs_bare(run, database[BASELINE]['rps']):.2f}x bare"
            + (f" ({run['vs_node'][0]:.0%} of Node)" if "vs_node" in run else "")
            + f", {errors[name]} errors"
            for name, run in database.items()
            if name.startswith("cluster")
        )
        add("database, each class", "(for reading)", others, None)
    for worker_class, figures in results.get("memory", {}).items():
        if worker_class != BASELINE:
            share = figures["per_extra_worker_share"]
            add(f"memory per extra worker ({_memory_label(worker_class, figures)})", "<= 15% of a 1-worker server",
                f"{share:.0%} ({figures['per_extra_worker_mb']} MB)", share <= 0.15)  # fmt: skip
    if "layers" in results:
        overhead = results["layers"]["cost_vs_bare"]["generated app"]
        add("template overhead per request vs bare Flask (/cpu)", "<= 25%", f"{overhead:+.0%}", overhead <= 0.25)
    if "metrics" in results:
        metrics = results["metrics"]
        measured = metrics["note"] == "metrics on versus off"
        add("metrics cost on /cpu", "<= 5%", f"{metrics['cost']:+.1%} ({metrics['note']})",
            metrics["cost"] <= 0.05 if measured else None)  # fmt: skip
    tracing = results.get("tracing", {}).get("runs")
    if tracing:
        measured = ", ".join(f"{state} {run['vs_off']:.2f}x off" for state, run in tracing.items() if "vs_off" in run)
        add("traces cost on /cpu (req/s, traced vs off)", "(for reading)", measured, None)
    for name, row in results.get("users", {}).items():
        add(f"{row['users']} concurrent users: {name}", ">= 99.9% first try, /health >= 99%, 0 crashes",
            f"{row['first_try']:.2%}, /health {row['health_answered']:.1%}, {row['worker_crashes']} crashes",
            row["first_try"] >= 0.999 and row["health_answered"] >= 0.99 and not row["worker_crashes"])  # fmt: skip
    for attack, by_server in results.get("attacks", {}).items():
        if attack in ISSUE_27_ATTACKS:
            for name, row in by_server.items():
                first = row.get("first_answered_share")
                add(f"{attack}: {name}", "/health >= 99%, 0 worker crashes" + (", every first request answered"
                    if first is not None else ""),
                    f"{row['health_answered']:.1%}, {row.get('worker_crashes')} crashes"
                    + (f", {first:.2%} first answered" if first is not None else ""),
                    None if name == BASELINE else row["health_answered"] >= 0.99 and not row.get("worker_crashes")
                    and (first is None or first == 1))  # fmt: skip
            continue
        for name, row in by_server.items():
            oom = (row.get("cgroup") or {}).get("oom_kills")
            add(f"{attack}: {name}", "/health >= 99% within 2 s" + (", 0 OOM kills" if oom is not None else ""),
                f"{row['health_answered']:.1%}" + (f", {oom} OOM kills" if oom is not None else ""),
                None if name == BASELINE else row["health_answered"] >= 0.99 and not oom)  # fmt: skip
        if attack == "log flood":
            for name, row in by_server.items():
                add(f"log flood: {name}", "<= 500 lines/s", f"peak {row['peak_log_lines_per_s']} lines/s",
                    None if name == BASELINE else row["peak_log_lines_per_s"] <= 500)  # fmt: skip
    for order, by_server in (results.get("redeploy") or {}).items():
        if order == "skipped":
            continue
        for name, row in by_server.items():
            add(f"redeploy through nginx, {order}: {name}", "0 failed", f"{row['failed']} of {row['requests']}",
                None if name == BASELINE or "control" in order else row["failed"] == 0)  # fmt: skip
    if "chaos" in results:
        chaos = results["chaos"]
        add("SIGKILL a worker every 2 s under load", ">= 99.5% succeed, replaced within 1 s",
            f"{chaos['success_ratio']:.2%}, replaced in {chaos['replacement_serving_s']['max']}s at most",
            chaos["success_ratio"] >= 0.995 and chaos["replacement_serving_s"]["max"] <= 1)  # fmt: skip
    if "graceful_stop" in results:
        stop = results["graceful_stop"]
        add("SIGTERM under load", "0 accepted requests lost, exit within 10 s",
            f"{stop['dropped_after_accept']} lost, exit {stop['exit_code']} after {stop['exit_seconds']}s",
            stop["dropped_after_accept"] == 0 and stop["exit_code"] == 0 and stop["exit_seconds"] <= 10)  # fmt: skip
    if "startup" in results:
        startup = results["startup"]
        times = startup["cluster (gthread)"] / startup[BASELINE]
        add("start to first /health 200", "<= 1.5x bare", f"{times:.1f}x", times <= 1.5)
    lines = ["| claim | goal | measured | |", "|---|---|---|---|"]
    lines += [f"| {claim} | {goal} | {measured} | {verdict} |" for claim, goal, measured, verdict in rows]
    return "\n".join(lines)


def write(results: dict, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    data = out / "results.json"
    data.write_text(json.dumps(results, indent=2, default=str))
    return data, chart(results, out / "chart.png")


def chart(results: dict, path: Path) -> Path:
    """req/s and p99 of every server, load by load; memory against workers; availability under attack."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    throughput = results.get("throughput", {})
    loads = list(throughput)
    columns = max(1, len(loads))
    figure, axes = plt.subplots(3, columns, figsize=(5 * columns, 11), squeeze=False)
    for column, load in enumerate(loads):
        names = list(throughput[load])
        positions = range(len(names))
        colours = [f"C{index}" for index in positions]
        top, middle = axes[0][column], axes[1][column]
        runs = [throughput[load][name] for name in names]
        spread = [[run["rps"] - run.get("rps_min", run["rps"]) for run in runs],
                  [run.get("rps_max", run["rps"]) - run["rps"] for run in runs]]  # fmt: skip
        top.bar(positions, [run["rps"] for run in runs], color=colours, yerr=spread, capsize=3)
        top.set(title=f"{load}: requests/s (median, min-max)", xticks=list(positions))
        top.set_xticklabels(names, rotation=30, ha="right", fontsize=7)
        middle.bar(positions, [throughput[load][name]["p99_ms"] or 0 for name in names], color=colours)
        middle.set(title=f"{load}: p99 latency (ms)", xticks=list(positions))
        middle.set_xticklabels(names, rotation=30, ha="right", fontsize=7)
    for axis in axes[2]:
        axis.axis("off")
    memory = results.get("memory", {})
    if memory:
        axis = axes[2][0]
        axis.axis("on")
        for worker_class, figures in memory.items():
            if worker_class == BASELINE:
                axis.axhline(figures["pss_mb"], linestyle="--", color="grey", label="bare gunicorn")
                continue
            counts = sorted(figures["by_workers"], key=int)
            axis.plot([int(c) for c in counts], [figures["by_workers"][c]["pss_mb"] for c in counts], marker="o",
                      label=_memory_label(worker_class, figures))  # fmt: skip
        axis.set(title="memory: PSS of the whole server", xlabel="workers", ylabel="MB")
        axis.legend(fontsize=7)
    attacks = results.get("attacks", {})
    if attacks and columns > 1:
        axis = axes[2][1]
        axis.axis("on")
        servers = list(next(iter(attacks.values())))
        width = 0.8 / max(1, len(servers))
        for index, name in enumerate(servers):
            axis.bar([a + index * width for a in range(len(attacks))],
                     [attacks[attack].get(name, {}).get("health_answered", 0) * 100 for attack in attacks],
                     width, label=name)  # fmt: skip
        axis.set(
            title="under attack: /health answered within 2 s (%)",
            xticks=[a + 0.4 - width / 2 for a in range(len(attacks))],
        )
        axis.set_xticklabels(list(attacks), fontsize=7)
        axis.legend(fontsize=7)
    redeploys = {order: rows for order, rows in (results.get("redeploy") or {}).items() if order != "skipped"}
    if redeploys and columns > 2:
        axis = axes[2][2]
        axis.axis("on")
        names = list(next(iter(redeploys.values())))
        width = 0.8 / max(1, len(names))
        for index, name in enumerate(names):
            failed = [redeploys[order].get(name, {}).get("failed", 0) for order in redeploys]
            axis.bar([o + index * width for o in range(len(redeploys))], failed, width, label=name)
        axis.set(
            title="redeploy through nginx: failed requests", xticks=[o + 0.4 - width / 2 for o in range(len(redeploys))]
        )
        axis.set_xticklabels(list(redeploys), fontsize=7)
        axis.set_yscale("symlog")
        axis.legend(fontsize=7)
    figure.suptitle(f"{results['machine']} ({results['profile']} profile)", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
