"""Scale on one machine: rows/s versus ``--workers`` against today's sequential engine, measured in the same run.

Two loads, each run by this checkout with ``--workers 1`` and ``--workers 2`` and, as
the baseline, by the sequential engine of before issue 18 (the source tree of
:data:`BASELINE_REV`, extracted once with ``git archive`` into ``benchmarks/data``;
``CONDUIT_BENCH_BASELINE_REV`` picks another revision):

* ``scale_tiny_csv_w<N>``: 5,000 CSV files of 10 rows each into DuckDB (the per-file
  overhead: listing, inference, one transaction and ledger row per file before).
* ``scale_tpch3_w<N>``: TPC-H ``customer``, ``orders`` and ``lineitem`` (CSV, generated
  by ``tpchgen-cli``) as three resources of one run into DuckDB; the baseline loads
  them one after another.
* ``scale_tpch3_vs_3runs_w<N>``: the same one run against this checkout's three
  ``conduit run -r <table> --workers <N>`` one after another (issue 18: "in one run
  faster than the three runs in sequence", same code on both sides).

The Ray engine's ``_ray`` variants are in :mod:`benchmarks.scenarios.scale_ray`.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from benchmarks.harness import DATA, ROOT, Env, Scenario, conduit_argv, sf_name

BASELINE_REV = os.environ.get("CONDUIT_BENCH_BASELINE_REV", "a514285")
TINY_FILES = 5_000
TINY_ROWS = 10
TABLES = ("customer", "orders", "lineitem")


def baseline_src() -> Path:
    """Today's sequential engine: the ``conduit`` package of :data:`BASELINE_REV`, extracted once."""
    out = DATA / f"baseline-{BASELINE_REV}"
    if not (out / "conduit" / "__init__.py").is_file():
        out.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", BASELINE_REV, "conduit"], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    return out


def baseline_argv(config: Path) -> list[str]:
    """``conduit run`` with the baseline tree first on the path (``env`` overrides the harness's PYTHONPATH)."""
    return ["env", f"PYTHONPATH={baseline_src()}", sys.executable, "-m", "conduit", "run", str(config), "--no-progress"]


def tiny_files() -> Path:
    """5,000 CSV files of 10 rows (id, name, amount, day), written once."""
    out = DATA / "tiny_csv"
    if (out / f"f{TINY_FILES - 1:05d}.csv").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    for i in range(TINY_FILES):
        rows = "".join(f"{i * TINY_ROWS + j},name{j},{(i * 31 + j * 7) % 10_000 / 100:.2f},2024-01-{j + 1:02d}\n" for j in range(TINY_ROWS))
        (out / f"f{i:05d}.csv").write_text("id,name,amount,day\n" + rows)
    return out


def tpch_csv(sf: float) -> Path:
    """customer, orders and lineitem as CSV under benchmarks/data/sf<SF>/csv3 (generated once)."""
    out = DATA / f"sf{sf_name(sf)}" / "csv3"
    if all((out / f"{t}.csv").is_file() for t in TABLES):
        return out
    gen = Path(sys.executable).with_name("tpchgen-cli")
    tmp = out.with_name(".csv3.tmp")
    for table in TABLES:
        subprocess.run([str(gen) if gen.exists() else "tpchgen-cli", "csv", "-s", sf_name(sf), "-T", table, "-o", str(tmp), "--overwrite"], check=True)
    tmp.rename(out)
    return out


def _tiny_config(env: Env) -> None:
    baseline_src()
    (env.work / "ingest.yml").write_text(f"""version: 1
sources: [{{name: files, type: csv, path: "{tiny_files()}"}}]
destinations: [{{name: local, type: duckdb, path: conduit.duckdb}}]
resources: [{{name: tiny, source: files, destination: local, path: "*.csv", write_mode: replace}}]
""")


def _tpch_config(env: Env) -> None:
    baseline_src()
    data = tpch_csv(env.sf)
    resources = "".join(f"  - {{name: {t}, source: tpch, destination: local, path: {t}.csv, write_mode: replace}}\n" for t in TABLES)
    (env.work / "ingest.yml").write_text(f"""version: 1
sources: [{{name: tpch, type: csv, path: "{data}"}}]
destinations: [{{name: local, type: duckdb, path: conduit.duckdb}}]
resources:
{resources}""")


def _count(env: Env, tables: tuple[str, ...]) -> int:
    import duckdb

    with duckdb.connect(str(env.work / "conduit.duckdb"), read_only=True) as con:
        return sum(int(con.execute(f"SELECT count(*) FROM main.{t}").fetchall()[0][0]) for t in tables)


def _tpch_rows(env: Env) -> int:
    data = tpch_csv(env.sf)
    total = 0
    for t in TABLES:
        with (data / f"{t}.csv").open("rb") as fh:
            total += sum(chunk.count(b"\n") for chunk in iter(lambda fh=fh: fh.read(1 << 24), b"")) - 1  # minus the header
    return total


def three_runs_argv(config: Path, workers: int) -> list[str]:
    """This checkout's ``conduit run -r <table>`` for each table, one after another, in one shell."""
    runs = [shlex.join(conduit_argv(config, "-r", t, "--workers", str(workers))) for t in TABLES]
    return ["sh", "-c", " && ".join(runs)]


def _scenarios(workers: int) -> list[Scenario]:
    return [
        Scenario(
            name=f"scale_tiny_csv_w{workers}",
            baseline_name=f"sequential engine {BASELINE_REV}",
            prepare=_tiny_config,
            command=lambda env: conduit_argv(env.work / "ingest.yml", "--workers", str(workers)),
            baseline=lambda env: baseline_argv(env.work / "ingest.yml"),
            verify=lambda env: _count(env, ("tiny",)),
            expected=lambda env: TINY_FILES * TINY_ROWS,
        ),
        Scenario(
            name=f"scale_tpch3_w{workers}",
            baseline_name=f"sequential engine {BASELINE_REV}",
            prepare=_tpch_config,
            command=lambda env: conduit_argv(env.work / "ingest.yml", "--workers", str(workers)),
            baseline=lambda env: baseline_argv(env.work / "ingest.yml"),
            verify=lambda env: _count(env, TABLES),
            expected=_tpch_rows,
        ),
        Scenario(
            name=f"scale_tpch3_vs_3runs_w{workers}",
            baseline_name=f"3 runs in sequence, --workers {workers}",
            prepare=_tpch_config,
            command=lambda env: conduit_argv(env.work / "ingest.yml", "--workers", str(workers)),
            baseline=lambda env: three_runs_argv(env.work / "ingest.yml", workers),
            verify=lambda env: _count(env, TABLES),
            expected=_tpch_rows,
        ),
    ]


SCENARIOS = _scenarios(1) + _scenarios(2)
