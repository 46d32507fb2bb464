"""Worker counts from cgroup v1 and v2 trees, the plan and the settings, without gunicorn."""

import dataclasses

import pytest

from railkit import project
from railkit.cluster import sizing
from railkit.cluster.sizing import Measure, size_cluster
from railkit.plans import PLANS
from railkit.settings import Settings

from .servers import PROJECT_ROOT


def _tree(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "200000 100000\n"}, 2.0),
        ({"cpu.max": "50000 100000"}, 0.5),
        ({"cpu.max": "max 100000"}, None),
        ({"cpu/cpu.cfs_quota_us": "300000", "cpu/cpu.cfs_period_us": "100000"}, 3.0),
        ({"cpu,cpuacct/cpu.cfs_quota_us": "150000", "cpu,cpuacct/cpu.cfs_period_us": "100000"}, 1.5),
        ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, None),
        ({}, None),
    ],
    ids=["v2", "v2-fraction", "v2-max", "v1", "v1-cpuacct", "v1-unlimited", "absent"],
)
def test_cgroup_cpu_limit(tmp_path, files, expected):
    limit = sizing.cgroup_cpu_limit(_tree(tmp_path, files))
    assert (limit.value if limit else None) == expected


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"memory.max": str(512 * 2**20)}, 512),
        ({"memory.max": "max"}, None),
        ({"memory/memory.limit_in_bytes": str(2 * 2**30)}, 2048),
        ({"memory/memory.limit_in_bytes": "9223372036854771712"}, None),
        ({}, None),
    ],
    ids=["v2", "v2-max", "v1", "v1-unlimited", "absent"],
)
def test_cgroup_memory_limit(tmp_path, files, expected):
    limit = sizing.cgroup_memory_limit_mb(_tree(tmp_path, files))
    assert (limit.value if limit else None) == expected


def test_available_cpus_prefers_the_quota_over_host_cores(tmp_path):
    cpus = sizing.available_cpus(_tree(tmp_path, {"cpu.max": "100000 100000"}))
    assert cpus == Measure(1.0, "cgroup v2 cpu.max")


def test_available_memory_prefers_the_cgroup_limit(tmp_path):
    memory = sizing.available_memory_mb(_tree(tmp_path, {"memory.max": str(256 * 2**20)}))
    assert memory == Measure(256, "cgroup v2 memory.max")


HOST = Measure(64, "os.cpu_count"), Measure(256 * 1024, "psutil total memory")


@pytest.mark.parametrize("plan", sorted(PLANS))
def test_each_plan_fits_its_replica(plan):
    """On a big host, the plan's replica size bounds the workers; all of them fit in memory."""
    settings = Settings.from_env({"RAILWAY_PLAN": plan})
    size = size_cluster(settings, *HOST)
    spec = PLANS[plan]
    if not spec.clustering:
        assert size.workers == 1
        return
    assert 1 < size.workers <= sizing.workers_for_cpus(spec.vcpu, settings.worker_class)
    assert size.workers * spec.worker_max_memory_mb + sizing.MASTER_RESERVE_MB <= spec.memory_mb


def test_memory_bounds_workers_below_the_cpu_rule():
    settings = Settings.from_env({"RAILWAY_PLAN": "pro", "WORKER_MAX_MEMORY_MB": "1000"})
    size = size_cluster(settings, Measure(4, "test"), Measure(2100, "test"))
    assert size.workers == 2


def test_never_below_one_worker():
    settings = Settings.from_env({"ENABLE_CLUSTERING": "true", "WORKER_MAX_MEMORY_MB": "4096"})
    assert size_cluster(settings, Measure(1, "test"), Measure(128, "test")).workers == 1


def test_web_concurrency_overrides_everything():
    settings = Settings.from_env({"WEB_CONCURRENCY": "7", "RAILWAY_PLAN": "free"})
    size = size_cluster(settings, Measure(1, "test"), Measure(128, "test"))
    assert size.workers == 7
    assert "WEB_CONCURRENCY" in size.reason


@pytest.mark.parametrize("worker_class", ["gthread", "gevent", "sync"])
def test_threads_only_for_gthread(worker_class):
    size = size_cluster(dataclasses.replace(Settings.from_env({}), worker_class=worker_class), *HOST)
    assert size.threads == sizing.threads_per_worker(worker_class, project.SERVER)
    assert (size.threads > 1) == (worker_class == "gthread")


def test_granian_runs_more_threads_than_a_gthread_worker():
    """granian's blocking threads are what bound its routes that wait on I/O; a sync project keeps one."""
    assert sizing.threads_per_worker("gthread", "granian") > sizing.threads_per_worker("gthread", "gunicorn") > 1
    assert sizing.threads_per_worker("sync", "granian") == 1


def test_clustering_off_is_one_worker():
    settings = Settings.from_env({"ENABLE_CLUSTERING": "false"})
    assert size_cluster(settings, *HOST).workers == 1


@pytest.mark.parametrize(
    ("worker_class", "cpus", "expected"),
    [("sync", 2, 5), ("gthread", 2, 5), ("gevent", 2, 2), ("sync", 0.5, 3), ("gthread", 0.5, 3), ("gevent", 1.5, 2)],
)
def test_cpu_rule_per_worker_class(worker_class, cpus, expected):
    assert sizing.workers_for_cpus(cpus, worker_class) == expected


def test_readme_plan_table_agrees_with_the_sizing():
    """The README's workers column is rendered from the same plan table: it must match the code."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    table = [line.split("|") for line in readme.splitlines() if "vCPU /" in line]
    rows = {cells[1].split("(")[0].strip(): cells for cells in table}
    for name, plan in PLANS.items():
        settings = Settings.from_env({"RAILWAY_PLAN": name})
        assert int(rows[plan.label][3]) == size_cluster(settings, *HOST).workers, name
