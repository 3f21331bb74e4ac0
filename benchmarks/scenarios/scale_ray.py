"""Scale on a Ray cluster: the scale loads with ``--engine ray`` on a local 2-node cluster.

``scale_tiny_csv_ray`` and ``scale_tpch3_ray`` run the loads of :mod:`benchmarks.scenarios.scale`
with ``--engine ray --address <cluster>`` against a loopback Ray cluster of two nodes,
one CPU each, that the first of them starts (``tests/ray_cluster.py``'s
:class:`LocalRayCluster`, loaded by path: tests and benchmarks share it without either
importing the other's package) and that is killed when the harness exits. The baseline
is this checkout's local engine with ``--workers 2``, measured in the same run.

Peak RSS: the cluster's processes (head, raylet, object store, workers) are not children
of the timed command, so each 50 ms sample adds their summed RSS *now* to the driver
tree's peak (``Scenario.outside_rss``). That sum includes the idle cluster (printed
when it starts) and shared memory of the object store counted in every process mapping it.
"""

from __future__ import annotations

import atexit
import importlib.util
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.harness import ROOT, Env, Scenario, child_env, conduit_argv
from benchmarks.scenarios.scale import TABLES, TINY_FILES, TINY_ROWS, _count, _tiny_config, _tpch_config, _tpch_rows

if importlib.util.find_spec("ray") is None:  # the harness skips this module, loudly
    msg = "the _ray scale scenarios need Ray: pip install 'conduit-load[ray]'"
    raise ImportError(msg)

OBJECT_STORE_BYTES = 1_000_000_000  # batches bound for DuckDB come back to the driver through it
_cluster: Any = None


def _cluster_class() -> Any:
    spec = importlib.util.spec_from_file_location("conduit_bench_ray_cluster", ROOT / "tests" / "ray_cluster.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.LocalRayCluster


def cluster() -> Any:
    """The benchmark's Ray cluster, started once (its nodes run this checkout: PYTHONPATH)."""
    global _cluster  # one cluster per harness process
    if _cluster is None:
        root = Path(tempfile.mkdtemp(prefix="cbr", dir="/tmp"))  # Ray keeps socket paths under it: short paths only
        _cluster = _cluster_class()(root, {"PYTHONPATH": child_env()["PYTHONPATH"]}, OBJECT_STORE_BYTES).start()
        atexit.register(_cluster.stop)
        print(f"  Ray cluster of 2 nodes at {_cluster.address}, idle RSS {cluster_rss() / 2**20:.0f} MiB", flush=True)
    return _cluster


def cluster_rss() -> int:
    """The summed RSS now of the cluster's processes."""
    import psutil

    total = 0
    for proc in cluster().processes():
        try:
            total += int(proc.memory_info().rss)
        except psutil.Error:
            continue
    return total


def _ray_argv(config: Path) -> list[str]:
    return conduit_argv(config, "--engine", "ray", "--address", cluster().address)


def _prepared(prepare: Any) -> Any:
    def run(env: Env) -> None:
        prepare(env)
        cluster()

    return run


SCENARIOS = [
    Scenario(
        name="scale_tiny_csv_ray",
        baseline_name="local engine --workers 2",
        prepare=_prepared(_tiny_config),
        command=lambda env: _ray_argv(env.work / "ingest.yml"),
        baseline=lambda env: conduit_argv(env.work / "ingest.yml", "--workers", "2"),
        verify=lambda env: _count(env, ("tiny",)),
        expected=lambda env: TINY_FILES * TINY_ROWS,
        outside_rss=cluster_rss,
    ),
    Scenario(
        name="scale_tpch3_ray",
        baseline_name="local engine --workers 2",
        prepare=_prepared(_tpch_config),
        command=lambda env: _ray_argv(env.work / "ingest.yml"),
        baseline=lambda env: conduit_argv(env.work / "ingest.yml", "--workers", "2"),
        verify=lambda env: _count(env, TABLES),
        expected=_tpch_rows,
        outside_rss=cluster_rss,
    ),
]
