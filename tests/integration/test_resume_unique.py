"""``unique`` across a crash: keys staged before a SIGKILL still count after ``--resume``.

The duplicate's first occurrence is in chunk 0, which is staged before the kill; the
repeat comes after it. The resumed run must dead-letter the repeat exactly once, as an
uninterrupted run does. Checked with DuckDB on the table and Polars on the DLQ file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl

ROWS = 30_000
DUP_AT = 20_000  # this row repeats id 100 (row 100, in chunk 0)

CONFIG = """\
sources: [{name: files, type: csv, path: data/}]
destinations: [{name: local, type: duckdb, path: w.duckdb}]
resources:
  - name: events
    source: files
    destination: local
    path: events.csv
    batch_size: 1000
    quality_checks:
      - {column: id, check: unique, action: dlq}
      - {column: [id, name], check: unique, action: dlq}
"""


def project(tmp: Path) -> Path:
    (tmp / "data").mkdir(parents=True)
    ids = pl.int_range(1, ROWS + 1, eager=True)
    df = pl.DataFrame({"id": ids}).with_columns(pl.when(pl.col("id") == DUP_AT).then(100).otherwise(pl.col("id")).alias("id"), pl.format("n{}", pl.col("id") % 7).alias("name"))
    df.write_csv(tmp / "data" / "events.csv")
    (tmp / "ingest.yml").write_text(CONFIG)
    return tmp / "ingest.yml"


def conduit(cfg: Path, *args: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONDUIT_FAULT": fault or ""}
    return subprocess.run([sys.executable, "-m", "conduit", "run", str(cfg), "--no-progress", *args], capture_output=True, text=True, env=env, timeout=300)


def outcome(tmp: Path) -> tuple[int, int, list[int], list[str]]:
    with duckdb.connect(str(tmp / "w.duckdb"), read_only=True) as con:
        n, distinct = con.execute("SELECT count(*), count(DISTINCT id) FROM main.events").fetchone()  # type: ignore[misc]
    dlq = pl.read_parquet(next((tmp / ".conduit" / "dlq").glob("*/events.parquet")))
    return n, distinct, dlq["_conduit_row_number"].to_list(), dlq["_conduit_check"].to_list()


def test_duplicate_split_across_a_crash_is_dead_lettered_once(tmp_path: Path) -> None:
    clean = project(tmp_path / "clean")
    assert conduit(clean).returncode == 0
    expected = outcome(tmp_path / "clean")
    assert expected == (ROWS - 1, ROWS - 1, [DUP_AT], ["unique id"])

    cfg = project(tmp_path / "crash")
    killed = conduit(cfg, fault="staged:1")  # SIGKILL right after chunk 0 (rows 1-8000) is staged
    assert killed.returncode == -9, killed.stderr
    assert list((tmp_path / "crash" / ".conduit" / "dlq").glob("*/_parts/events-00000.keys*.npy"))
    resumed = conduit(cfg, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout + resumed.stderr
    assert outcome(tmp_path / "crash") == expected
    assert not list((tmp_path / "crash" / ".conduit" / "dlq").glob("*/_parts/*"))
