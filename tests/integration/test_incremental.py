"""Incremental loads: typed marks, new rows only, files skipped by statistics, NULL marks once."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest

CONFIG = """\
sources:
  - {{name: files, type: {fmt}, path: data/}}
destinations: [{{name: local, type: duckdb, path: w.duckdb}}]
resources:
  - {{name: events, source: files, destination: local, path: "*.{fmt}", incremental_column: {col}{extra}}}
"""


def run(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "conduit", "run", str(cfg), "--no-progress", *args], capture_output=True, text=True, env=dict(os.environ), timeout=120)


def frame(start: int, n: int) -> pl.DataFrame:
    return pl.DataFrame({"id": pl.int_range(start, start + n, eager=True)}).with_columns(
        (pl.datetime(2024, 1, 1, time_zone="UTC") + pl.duration(hours=pl.col("id"))).alias("updated_at"),
    )


def count(db: Path, sql: str = "SELECT count(*), count(DISTINCT id) FROM main.events") -> tuple:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchone()  # type: ignore[return-value]


def store(project: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(project / ".conduit" / "conduit.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_three_runs_load_exactly_the_new_rows(tmp_path: Path, fmt: str) -> None:
    (tmp_path / "data").mkdir()
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(CONFIG.format(fmt=fmt, col="updated_at", extra=""))
    write = (lambda df, p: df.write_parquet(p)) if fmt == "parquet" else (lambda df, p: df.write_csv(p))
    write(frame(0, 100), tmp_path / "data" / f"a.{fmt}")
    assert run(cfg).returncode == 0
    # new rows arrive in a new file, and (CSV) appended to the old file too
    write(frame(100, 50), tmp_path / "data" / f"b.{fmt}")
    assert run(cfg).returncode == 0
    if fmt == "csv":
        write(frame(0, 170), tmp_path / "data" / f"a.{fmt}")  # rewritten with 20 newer rows
    else:
        write(frame(150, 20), tmp_path / "data" / f"c.{fmt}")
    third = run(cfg)
    assert third.returncode == 0, third.stderr
    assert count(tmp_path / "w.duckdb") == (170, 170)
    marks = store(tmp_path, "SELECT value, value_type FROM state WHERE resource = 'events'")
    assert marks == [("2024-01-08 01:00:00+00:00", "timestamp[us, tz=UTC]")]
    written = store(tmp_path, "SELECT rows_written FROM resource_runs ORDER BY started_at")
    assert [w[0] for w in written] == [100, 50, 20]
    nothing = run(cfg)
    assert nothing.returncode == 0
    assert "0 rows loaded" in nothing.stderr and "nothing newer than 2024-01-08 01:00:00+00:00" in nothing.stderr
    assert count(tmp_path / "w.duckdb") == (170, 170)


def test_parquet_files_with_nothing_newer_are_not_read(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(CONFIG.format(fmt="parquet", col="id", extra=""))
    frame(0, 100).write_parquet(tmp_path / "data" / "a.parquet")
    assert run(cfg).returncode == 0
    frame(100, 10).write_parquet(tmp_path / "data" / "b.parquet")
    assert run(cfg).returncode == 0
    read = store(tmp_path, "SELECT rows_read, rows_written, rows_filtered, bytes_read FROM resource_runs ORDER BY started_at")
    assert read[1][:3] == (10, 10, 0)  # a.parquet was skipped by its statistics, not filtered row by row
    assert read[1][3] == (tmp_path / "data" / "b.parquet").stat().st_size
    assert store(tmp_path, "SELECT value, value_type FROM state") == [("109", "int64")]


def test_integer_mark_is_not_compared_as_text(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(CONFIG.format(fmt="csv", col="id", extra=""))
    (tmp_path / "data" / "a.csv").write_text("id\n9\n")
    assert run(cfg).returncode == 0
    (tmp_path / "data" / "a.csv").write_text("id\n9\n10\n100\n")  # '10' < '9' as text
    assert run(cfg).returncode == 0
    assert count(tmp_path / "w.duckdb", "SELECT list(id ORDER BY id) FROM main.events") == ([9, 10, 100],)


def test_null_marks_are_loaded_once(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(CONFIG.format(fmt="csv", col="seq", extra=""))
    (tmp_path / "data" / "a.csv").write_text("id,seq\n1,1\n2,\n3,3\n")
    first = run(cfg)
    assert "1 row with NULL seq loaded once" in first.stderr
    assert run(cfg).returncode == 0  # nothing new: the NULL row is not reloaded
    (tmp_path / "data" / "b.csv").write_text("id,seq\n4,\n5,5\n")  # a new file: its NULL row loads once
    assert run(cfg).returncode == 0
    assert run(cfg).returncode == 0
    assert count(tmp_path / "w.duckdb", "SELECT list(id ORDER BY id) FROM main.events") == ([1, 2, 3, 4, 5],)


def test_full_refresh_resets_the_mark_and_lookback_rereads_a_window(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(CONFIG.format(fmt="parquet", col="updated_at", extra=", incremental_lookback: 2h, write_mode: merge, primary_keys: [id]"))
    frame(0, 10).write_parquet(tmp_path / "data" / "a.parquet")
    assert run(cfg).returncode == 0
    assert run(cfg).returncode == 0  # re-reads the last 2 hours, both ends included (merge reads rows at the mark), merge keeps one copy
    assert store(tmp_path, "SELECT rows_read, rows_filtered, rows_written FROM resource_runs ORDER BY started_at") == [(10, 0, 10), (10, 7, 3)]
    assert count(tmp_path / "w.duckdb") == (10, 10)
    refresh = run(cfg, "--full-refresh")
    assert refresh.returncode == 0
    assert store(tmp_path, "SELECT rows_read FROM resource_runs ORDER BY started_at DESC LIMIT 1") == [(10,)]
    assert store(tmp_path, "SELECT value FROM state") == [(str(dt.datetime(2024, 1, 1, 9, tzinfo=dt.UTC)).replace("T", " "),)]


def test_state_show_and_reset(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(CONFIG.format(fmt="csv", col="id", extra=""))
    (tmp_path / "data" / "a.csv").write_text("id\n1\n2\n")
    assert run(cfg).returncode == 0
    show = subprocess.run([sys.executable, "-m", "conduit", "state", "show", "--config", str(cfg)], capture_output=True, text=True)
    assert "events" in show.stdout and "int64" in show.stdout
    reset = subprocess.run([sys.executable, "-m", "conduit", "state", "reset", "events", "--config", str(cfg)], capture_output=True, text=True)
    assert reset.stdout.strip() == "events: state reset"
    assert store(tmp_path, "SELECT count(*) FROM state") == [(0,)]


def test_text_mark_into_duckdb(tmp_path: Path) -> None:
    """DuckDB takes Polars' string_view batches; the text mark and recorded types are unchanged."""
    (tmp_path / "data").mkdir()
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(CONFIG.format(fmt="parquet", col="code", extra=""))
    pl.DataFrame({"id": [1, 2], "code": ["a", "b"]}).write_parquet(tmp_path / "data" / "a.parquet")
    first = run(cfg)
    assert first.returncode == 0, first.stderr
    pl.DataFrame({"id": [3, 4], "code": ["a", "c"]}).write_parquet(tmp_path / "data" / "b.parquet")
    assert run(cfg).returncode == 0
    assert count(tmp_path / "w.duckdb", "SELECT list(id ORDER BY id) FROM main.events") == ([1, 2, 4],)
    assert store(tmp_path, "SELECT value, value_type FROM state") == [("c", "large_string")]
    assert store(tmp_path, "SELECT schema_json FROM schema_versions") == [('[{"name": "id", "type": "int64"}, {"name": "code", "type": "large_string"}]',)]
