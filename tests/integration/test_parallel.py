"""Parts and resources loaded concurrently (``--workers``): every row once, dead letters once, resume after a kill.

The kill is real (``CONDUIT_FAULT``, see conduit/crash_points.py); results are checked
with DuckDB (and the dead-letter Parquet) directly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest

FILES = 6
ROWS = 20_000  # ~400 KiB a file: each file is a part job of its own (chunks of 2 x 2,500 rows)
BAD_EVERY = 4_999  # ids with id % BAD_EVERY == 7 hold a bad amount

CONFIG = """\
sources: [{{name: files, type: csv, path: data/}}]
destinations: [{{name: local, type: duckdb, path: w.duckdb}}]
resources:
  - {{name: events, source: files, destination: local, path: "events-*.csv", write_mode: {mode}, primary_keys: [id], batch_size: 2500, parallelism: {parallelism}, columns: {{amount: bigint}}}}
"""


def make_data(folder: Path, files: int = FILES, rows: int = ROWS, prefix: str = "events") -> int:
    """CSV files with a few bad rows; returns how many rows are bad."""
    folder.mkdir(parents=True, exist_ok=True)
    bad = 0
    for f in range(files):
        ids = pl.int_range(f * rows, (f + 1) * rows, eager=True)
        df = pl.DataFrame({"id": ids}).with_columns(pl.format("name-{}", pl.col("id")).alias("name"))
        df = df.with_columns(pl.when(pl.col("id") % BAD_EVERY == 7).then(pl.lit("bad")).otherwise((pl.col("id") * 7 % 1000).cast(pl.String)).alias("amount"))
        bad += int((ids % BAD_EVERY == 7).sum())
        df.write_csv(folder / f"{prefix}-{f:04d}.csv")
    return bad


def conduit(cfg: Path, *args: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONDUIT_FAULT": fault or ""}
    return subprocess.run([sys.executable, "-m", "conduit", "run", str(cfg), "--no-progress", *args], capture_output=True, text=True, env=env, timeout=300)


def loaded(db: Path, table: str = "events") -> tuple[int, int]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(f"SELECT count(*), count(DISTINCT id) FROM main.{table}").fetchone()  # type: ignore[return-value]


def dead_letters(project: Path) -> list[tuple[str, int]]:
    """(file name, row number) of every dead letter of the newest run, sorted."""
    (path,) = (project / ".conduit" / "dlq").glob("*/events.parquet")
    df = pl.read_parquet(path)
    return sorted((Path(f).name, n) for f, n in df.select("_conduit_source_file", "_conduit_row_number").iter_rows())


def expected_dead_letters(files: int = FILES, rows: int = ROWS) -> list[tuple[str, int]]:
    return sorted((f"events-{i // rows:04d}.csv", i % rows + 1) for i in range(files * rows) if i % BAD_EVERY == 7)


@pytest.mark.parametrize(
    ("fault", "mode"),
    [
        pytest.param("read:9", "append", id="during-read"),
        pytest.param("staged:3", "append", id="after-chunks-staged"),
        pytest.param("staged:5", "merge", id="late-chunk-merge"),
        pytest.param("publish", "append", id="before-publish"),
    ],
)
def test_parts_in_parallel_killed_then_resumed_load_every_row_once(tmp_path: Path, fault: str, mode: str) -> None:
    """Two parts staged at once; a kill can commit a later chunk and not an earlier one; the resume fills the gaps."""
    bad = make_data(tmp_path / "data")
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(CONFIG.format(mode=mode, parallelism=2))
    crashed = conduit(cfg, "--workers", "2", fault=fault)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    resumed = conduit(cfg, "--resume", "--workers", "2")
    assert resumed.returncode == 0, resumed.stderr
    good = FILES * ROWS - bad
    assert loaded(tmp_path / "w.duckdb") == (good, good)
    assert dead_letters(tmp_path) == expected_dead_letters()
    with duckdb.connect(str(tmp_path / ".conduit" / "conduit.duckdb"), read_only=True) as con:
        assert con.execute("SELECT rows_read, rows_written, rows_dlq FROM resource_runs").fetchall() == [(FILES * ROWS, good, bad)]


def test_many_small_files_share_chunks_and_keep_their_dead_letters(tmp_path: Path) -> None:
    """300 tiny files load as a few chunks; each bad row is dead-lettered under its own file and row number."""
    bad = make_data(tmp_path / "data", files=300, rows=20)
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(CONFIG.format(mode="append", parallelism=2))
    done = conduit(cfg, "--workers", "2")
    assert done.returncode == 0, done.stderr
    assert loaded(tmp_path / "w.duckdb") == (6000 - bad, 6000 - bad)
    assert bad and dead_letters(tmp_path) == expected_dead_letters(300, 20)
    with duckdb.connect(str(tmp_path / ".conduit" / "conduit.duckdb"), read_only=True) as con:
        [(chunks,)] = con.execute("SELECT count(*) FROM checkpoints").fetchall()
    assert chunks < 10  # not one per file


def test_small_files_killed_after_a_group_resume_without_loading_it_twice(tmp_path: Path) -> None:
    """A group of small files is one chunk: the resume skips the groups the ledger names and reads the rest."""
    bad = make_data(tmp_path / "data", files=2500, rows=2)  # 3 groups of at most 1,000 files
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(CONFIG.format(mode="append", parallelism=1))
    crashed = conduit(cfg, fault="staged:2")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    resumed = conduit(cfg, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after 2 staged chunks" in resumed.stderr  # killed right after the second committed
    assert loaded(tmp_path / "w.duckdb") == (5000 - bad, 5000 - bad)


RESOURCES = """\
sources: [{name: files, type: csv, path: data/}]
destinations: [{name: local, type: duckdb, path: w.duckdb}]
resources:
  - {name: a, source: files, destination: local, path: "a-*.csv", columns: {amount: bigint}}
  - {name: broken, source: files, destination: local, path: "b-*.csv", quality_checks: [{column: amount, check: not_null, action: fail}]}
  - {name: c, source: files, destination: local, path: "c-*.csv", columns: {amount: bigint}}
"""


def test_resources_in_parallel_keep_config_order_and_exit_codes(tmp_path: Path) -> None:
    """Three resources at once into one DuckDB file: two load, one fails; results in config order, exit 1."""
    data = tmp_path / "data"
    make_data(data, files=2, rows=5000, prefix="a")
    make_data(data, files=1, rows=100, prefix="c")
    (data / "b-0.csv").write_text("id,amount\n1,2\n2,\n")
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(RESOURCES)
    done = conduit(cfg, "--workers", "3")
    assert done.returncode == 1, done.stderr
    assert loaded(tmp_path / "w.duckdb", "a")[1] == 10_000 - sum(1 for i in range(10_000) if i % BAD_EVERY == 7)
    assert loaded(tmp_path / "w.duckdb", "c") == (99, 99)
    with duckdb.connect(str(tmp_path / ".conduit" / "conduit.duckdb"), read_only=True) as con:
        assert con.execute("SELECT resource, status FROM resource_runs ORDER BY resource").fetchall() == [("a", "partial_success"), ("broken", "failed"), ("c", "partial_success")]
    import conduit as api

    result = api.run(cfg, workers=3)  # the library returns results in config order too
    assert [r.name for r in result.resources] == ["a", "broken", "c"]


def test_files_sharing_a_cleaned_header_load_under_the_cleaned_names(tmp_path: Path) -> None:
    """Later files with the same header line reuse the first file's cleaned names (a blank and a repeated name)."""
    data = tmp_path / "data"
    data.mkdir()
    for f in range(40):
        (data / f"h-{f:02d}.csv").write_text(f"id,,ID\n{f},x{f},y{f}\n")
    cfg = tmp_path / "ingest.yml"
    cfg.write_text("sources: [{name: files, type: csv, path: data/}]\ndestinations: [{name: local, type: duckdb, path: w.duckdb}]\nresources: [{name: h, source: files, destination: local, path: 'h-*.csv'}]\n")
    done = conduit(cfg, "--workers", "2")
    assert done.returncode == 0, done.stderr
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        assert [r[0] for r in con.execute("DESCRIBE main.h").fetchall()] == ["id", "column_2", "ID_2"]
        assert con.execute('SELECT count(*), count(DISTINCT column_2), count(DISTINCT "ID_2"), sum(id) FROM main.h').fetchall() == [(40, 40, 40, sum(range(40)))]
