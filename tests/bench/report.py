"""The bench's figures as a table on stdout, a JSON file and a PNG chart."""

import json
from pathlib import Path

BASELINE = "bare gunicorn"


def ratio(value: float, base: float) -> str:
    return f"{value / base:.1f}x" if base else "-"


def table(results: dict) -> str:
    lines = [f"machine: {results['machine']}", ""]
    for load, by_server in results["throughput"].items():
        base = by_server[BASELINE]["rps"]
        lines.append(
            f"{load:<24} {'req/s':>8} {'vs bare':>8} {'errors':>7} {'timeouts':>8} {'p50 ms':>8} {'p99 ms':>8}"
        )
        for name, run in by_server.items():
            lines.append(
                f"  {name:<22} {run['rps']:>8.0f} {ratio(run['rps'], base):>8} {run['errors'] + run['non_2xx']:>7} "
                f"{run['timeouts']:>8} {_ms(run['p50_ms']):>8} {_ms(run['p99_ms']):>8}"
            )
        lines.append("")
    sweep = results["workers"]
    one = sweep["1"]["pss_mb"] if "1" in sweep else sweep[1]["pss_mb"]
    lines.append(f"{'workers':<24} {'PSS MB':>8} {'per extra worker':>17} {'cpu req/s':>10}")
    for count, row in sweep.items():
        if str(count) == "bare":
            lines.append(f"  {'bare gunicorn (1 sync)':<22} {row['pss_mb']:>8.1f}")
            continue
        extra = (row["pss_mb"] - one) / (int(count) - 1) if int(count) > 1 else None
        extra_text = f"{extra:.1f} MB ({extra / one:.0%})" if extra is not None else "-"
        lines.append(f"  {count!s:<22} {row['pss_mb']:>8.1f} {extra_text:>17} {row['cpu_rps']:>10}")
    chaos = results["chaos"]
    lines += [
        "",
        f"chaos: {chaos['kills']} workers SIGKILLed under load; {chaos['success_ratio']:.2%} of "
        f"{chaos['requests']} requests succeeded; replacement serving in {chaos['replacement_serving_s']['median']}s "
        f"(median), {chaos['replacement_serving_s']['max']}s (max)",
    ]
    stop = results["graceful_stop"]
    lines.append(
        f"graceful stop: SIGTERM under load; {stop['answered']} answered, {stop['dropped_after_accept']} dropped "
        f"after being accepted, exit {stop['exit_code']} after {stop['exit_seconds']}s"
    )
    startup = results["startup"]
    lines.append(
        f"startup to first /health 200: bare {startup[BASELINE]}s, cluster {startup['cluster (gthread)']}s "
        f"({ratio(startup['cluster (gthread)'], startup[BASELINE])})"
    )
    return "\n".join(lines)


def goals(results: dict) -> str:
    """Each of the seed's claims, its goal, and what this run measured."""
    throughput = results["throughput"]

    def times_bare(load: str, name: str) -> float:
        base = throughput[load][BASELINE]["rps"]
        return throughput[load][name]["rps"] / base if base else float("inf")

    sweep = {str(count): row for count, row in results["workers"].items()}
    counts = sorted(int(count) for count in sweep if count != "bare")
    one, most = sweep["1"]["pss_mb"], sweep[str(counts[-1])]["pss_mb"]
    per_extra = (most - one) / (counts[-1] - 1) / one
    gevent_1000 = throughput["io, 1000 connections"]["cluster (gevent)"]
    chaos, stop, startup = results["chaos"], results["graceful_stop"], results["startup"]
    rows = [
        ("CPU-bound, 16 connections", ">= 1.8x bare",
         f"gthread {times_bare('cpu, 16 connections', 'cluster (gthread)'):.1f}x, "
         f"gevent {times_bare('cpu, 16 connections', 'cluster (gevent)'):.1f}x"),
        ("I/O-bound, 200 connections (default gthread)", ">= 10x bare",
         f"{times_bare('io, 200 connections', 'cluster (gthread)'):.1f}x"),
        ("I/O-bound, 1000 connections (gevent)", ">= 100x bare, no errors",
         f"{times_bare('io, 1000 connections', 'cluster (gevent)'):.0f}x, "
         f"{gevent_1000['errors'] + gevent_1000['timeouts'] + gevent_1000['non_2xx']} errors"),
        ("memory per extra worker", "<= 15% of a 1-worker server",
         f"{per_extra:.0%} ({counts[-1]} workers: {most:.0f} MB, 1 worker: {one:.0f} MB)"),
        ("SIGKILL a worker every 2 s under load", ">= 99.5% succeed, replaced within 1 s",
         f"{chaos['success_ratio']:.2%}, replaced in {chaos['replacement_serving_s']['max']}s at most"),
        ("SIGTERM under load", "0 accepted requests lost, exit within 10 s",
         f"{stop['dropped_after_accept']} lost, exit {stop['exit_code']} after {stop['exit_seconds']}s"),
        ("start to first /health 200", "<= 1.5x bare",
         f"{startup['cluster (gthread)'] / startup[BASELINE]:.1f}x"),
    ]  # fmt: skip
    lines = ["| claim | goal | measured |", "|---|---|---|"]
    lines += [f"| {claim} | {goal} | {measured} |" for claim, goal, measured in rows]
    return "\n".join(lines)


def _ms(value) -> str:
    return f"{value:.1f}" if value is not None else "-"


def write(results: dict, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    data = out / "results.json"
    data.write_text(json.dumps(results, indent=2, default=str))
    return data, chart(results, out / "chart.png")


def chart(results: dict, path: Path) -> Path:
    """Throughput and memory versus workers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {int(count): row for count, row in results["workers"].items() if str(count) != "bare"}
    counts = sorted(rows)
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(counts, [rows[c]["cpu_rps"] for c in counts], marker="o")
    left.set(title="/cpu throughput, 16 connections", xlabel="workers", ylabel="requests/s")
    right.plot(counts, [rows[c]["pss_mb"] for c in counts], marker="o", label="cluster")
    right.axhline(results["workers"]["bare"]["pss_mb"], linestyle="--", color="grey", label="bare gunicorn")
    right.set(title="memory (PSS of all processes)", xlabel="workers", ylabel="MB")
    right.legend()
    figure.suptitle(results["machine"], fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
