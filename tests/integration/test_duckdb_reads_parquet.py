"""DuckDB reads local Parquet files itself when their rows pass untransformed.

Each check compares the table Conduit wrote with the same file read by pyarrow and
inserted through DuckDB's Arrow scan (the path every other part takes), so a value or
type that DuckDB's Parquet reader gives differently fails here. Kills are real
(``CONDUIT_FAULT``), as in test_resume.py.
"""

from __future__ import annotations

import datetime as dt
import decimal
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import conduit
from conduit.connectors.duckdb import DuckDBDestination, _polled
from conduit.progress import Reporter

ROWS = 5_000


def every_type(start: int, rows: int) -> pa.Table:
    """Rows ``start`` .. ``start + rows - 1`` with a column of each type DuckDB reads alike, every seventh value NULL."""
    ids = list(range(start, start + rows))

    def col(values: list[Any], t: pa.DataType) -> pa.Array:
        return pa.array([None if i % 7 == 3 else v for i, v in zip(ids, values, strict=True)], type=t)

    utc = dt.UTC
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "i8": col([i % 100 - 50 for i in ids], pa.int8()),
            "i32": col([i * 3 for i in ids], pa.int32()),
            "u64": col([2**63 + i for i in ids], pa.uint64()),
            "f64": col([i / 3 for i in ids], pa.float64()),
            "f32": col([i / 4 for i in ids], pa.float32()),
            "dec": col([decimal.Decimal(i) / 100 + decimal.Decimal("12345678901234567890.12") for i in ids], pa.decimal128(38, 2)),
            "flag": col([i % 2 == 0 for i in ids], pa.bool_()),
            "day": col([dt.date(2020, 1, 1) + dt.timedelta(days=i % 3000) for i in ids], pa.date32()),
            "ts": col([dt.datetime(2021, 3, 4, 5, 6, 7, i % 1_000_000) for i in ids], pa.timestamp("us")),
            "tstz": col([dt.datetime(2021, 3, 4, 5, 6, 7, i % 1_000_000, tzinfo=utc) for i in ids], pa.timestamp("us", "UTC")),
            "at": col([dt.time(i % 24, i % 60, i % 60, i % 1_000_000) for i in ids], pa.time64("us")),
            "name": col([f"näme-{i}-🚀" for i in ids], pa.string()),
            "blob": col([bytes([i % 256, 0, 255]) for i in ids], pa.binary()),
            "tags": col([[i, i + 1] if i % 5 else [] for i in ids], pa.list_(pa.int64())),
            "info": col([{"a": i, "b": f"x{i}"} for i in ids], pa.struct([("a", pa.int64()), ("b", pa.string())])),
        }
    )


def project(tmp_path: Path, files: int = 2, extra: str = "") -> Path:
    data = tmp_path / "data"
    data.mkdir(parents=True, exist_ok=True)
    for f in range(files):
        pq.write_table(every_type(f * ROWS, ROWS), data / f"part-{f}.parquet", row_group_size=ROWS // 3)
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(f"sources: [{{name: files, type: parquet, path: data/}}]\ndestinations: [{{name: local, type: duckdb, path: w.duckdb}}]\nresources: [{{name: things, source: files, destination: local, path: 'part-*.parquet'{extra}}}]\n")
    return cfg


def written(db: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(the table's column names and types, its rows by id), read from the DuckDB file."""
    with duckdb.connect(str(db), read_only=True) as con:
        types = con.execute("SELECT column_name, column_type FROM (DESCRIBE main.things)").fetchall()
        return types, con.execute("SELECT * FROM main.things ORDER BY id").fetchall()


def through_arrow(data: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The same, for the files read by pyarrow and inserted through DuckDB's Arrow scan (times stay in µs here)."""
    arrow = pa.concat_tables(pq.read_table(p) for p in sorted(data.glob("*.parquet")))
    with duckdb.connect() as con:
        con.register("arrow", arrow)
        con.execute("CREATE TABLE things AS SELECT * FROM arrow")
        types = con.execute("SELECT column_name, column_type FROM (DESCRIBE things)").fetchall()
        return types, con.execute("SELECT * FROM things ORDER BY id").fetchall()


@pytest.fixture
def file_stages(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths DuckDBDestination.stage_file was called with (the real method runs)."""
    calls: list[str] = []
    real = DuckDBDestination.stage_file

    def spy(self: DuckDBDestination, load: Any, chunk: Any, file: Any, progress: Any) -> int:
        calls.append(Path(file.path).name)
        return real(self, load, chunk, file, progress)

    monkeypatch.setattr(DuckDBDestination, "stage_file", spy)
    return calls


class Counting(Reporter):
    def __init__(self) -> None:
        self.rows = 0

    def advance(self, resource: str, rows: int) -> None:
        assert rows >= 0
        self.rows += rows


def test_files_read_by_duckdb_equal_the_arrow_path(tmp_path: Path, file_stages: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = project(tmp_path / "native")
    reporter = Counting()
    result = conduit.run(cfg, reporter=reporter)
    assert result.status == "success", result
    assert file_stages == ["part-0.parquet", "part-1.parquet"]
    types, rows = written(tmp_path / "native" / "w.duckdb")
    assert rows == through_arrow(tmp_path / "native" / "data")[1]
    monkeypatch.setattr(DuckDBDestination, "reads", lambda *_: False)
    assert conduit.run(project(tmp_path / "arrow")).status == "success"
    assert file_stages == ["part-0.parquet", "part-1.parquet"]
    assert (types, rows) == written(tmp_path / "arrow" / "w.duckdb")  # Conduit's Arrow path: the same types (times in ns) and rows
    assert reporter.rows == 2 * ROWS
    with duckdb.connect(str(tmp_path / "native" / ".conduit" / "conduit.duckdb"), read_only=True) as con:
        assert con.execute("SELECT rows_read, rows_written FROM resource_runs").fetchall() == [(2 * ROWS, 2 * ROWS)]
        assert con.execute("SELECT count(*), sum(rows) FROM checkpoints").fetchall() == [(2, 2 * ROWS)]


def test_append_into_an_existing_table_is_read_by_duckdb_too(tmp_path: Path, file_stages: list[str]) -> None:
    cfg = project(tmp_path, extra=", write_mode: append")
    assert conduit.run(cfg).status == "success"
    assert conduit.run(cfg).status == "success"
    assert len(file_stages) == 4
    assert written(tmp_path / "w.duckdb")[1] == sorted(through_arrow(tmp_path / "data")[1] * 2, key=lambda r: r[0])


@pytest.mark.parametrize(
    ("why", "extra", "table"),
    [
        pytest.param("a declared type casts", ", columns: {i32: bigint}", None, id="cast"),
        pytest.param("a check runs", ", quality_checks: [{column: id, check: not_null}]", None, id="check"),
        pytest.param("merge adds a sequence", ", write_mode: merge, primary_keys: [id]", None, id="merge"),
        pytest.param("an incremental mark is taken", ", incremental_column: id", None, id="incremental"),
        pytest.param("DuckDB reads dictionaries differently", "", pa.table({"id": pa.array([1, 2], pa.int64()), "d": pa.array(["a", "b"]).dictionary_encode()}), id="dictionary"),
    ],
)
def test_a_part_that_needs_arrow_goes_through_arrow(tmp_path: Path, file_stages: list[str], why: str, extra: str, table: pa.Table | None) -> None:
    cfg = project(tmp_path, extra=extra)
    if table is not None:
        for p in (tmp_path / "data").glob("*.parquet"):
            p.unlink()
        pq.write_table(table, tmp_path / "data" / "part-0.parquet")
    result = conduit.run(cfg)
    assert result.status == "success", why
    assert file_stages == [], why
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        want = 2 if table is not None else 2 * ROWS
        assert con.execute("SELECT count(*), count(DISTINCT id) FROM main.things").fetchall() == [(want, want)]


def conduit_cli(cfg: Path, *args: str, fault: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONDUIT_FAULT": fault}
    return subprocess.run([sys.executable, "-m", "conduit", "run", str(cfg), "--no-progress", *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("fault", ["stage_commit:2", "staged:2", "read:3"])
def test_killed_while_duckdb_reads_a_file_resumes_every_row_once(tmp_path: Path, fault: str) -> None:
    cfg = project(tmp_path, files=3)
    crashed = conduit_cli(cfg, fault=fault)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'things'").fetchall() == [(0,)]
    resumed = conduit_cli(cfg, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert written(tmp_path / "w.duckdb")[1] == through_arrow(tmp_path / "data")[1]
    with duckdb.connect(str(tmp_path / ".conduit" / "conduit.duckdb"), read_only=True) as con:
        assert con.execute("SELECT status, rows_read, rows_written FROM resource_runs").fetchall() == [("success", 3 * ROWS, 3 * ROWS)]


def test_progress_of_a_running_statement_is_polled() -> None:
    seen: list[float] = []
    with duckdb.connect() as con:
        con.execute("SET enable_progress_bar = true; SET enable_progress_bar_print = false")
        started = time.monotonic()
        with _polled(con, seen.append, every_s=0.01):
            while not seen and time.monotonic() - started < 60:  # a statement long enough for DuckDB to report on
                con.execute("SELECT count(*) FROM range(200_000_000) a(i) WHERE i % 7 = 3").fetchall()
    assert seen
    assert all(0 <= f <= 1 for f in seen)


def test_a_file_name_with_glob_characters_is_read_as_that_file(tmp_path: Path) -> None:
    """DuckDB's read_parquet takes its path as a pattern: 'a[1].parquet' would read 'a1.parquet'."""
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(pa.table({"id": pa.array([1], pa.int64())}), data / "a[1].parquet")
    pq.write_table(pa.table({"id": pa.array([2, 3], pa.int64())}), data / "a1.parquet")
    cfg = tmp_path / "ingest.yml"
    cfg.write_text("sources: [{name: files, type: parquet, path: data/}]\ndestinations: [{name: local, type: duckdb, path: w.duckdb}]\nresources: [{name: things, source: files, destination: local, path: '*.parquet'}]\n")
    assert conduit.run(cfg).status == "success"
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        assert con.execute("SELECT id FROM main.things ORDER BY id").fetchall() == [(1,), (2,), (3,)]


def test_nanosecond_timestamps_keep_their_nanoseconds(tmp_path: Path) -> None:
    """DuckDB reads a legacy INT96 timestamp to microseconds; the Arrow path keeps every nanosecond."""
    data = tmp_path / "data"
    data.mkdir()
    ns = [1_600_000_000_123_456_789, None, -1]
    pq.write_table(pa.table({"id": pa.array([1, 2, 3], pa.int64()), "ts": pa.array(ns, pa.timestamp("ns"))}), data / "t.parquet", use_deprecated_int96_timestamps=True)
    cfg = tmp_path / "ingest.yml"
    cfg.write_text("sources: [{name: files, type: parquet, path: data/}]\ndestinations: [{name: local, type: duckdb, path: w.duckdb}]\nresources: [{name: things, source: files, destination: local, path: t.parquet}]\n")
    assert conduit.run(cfg).status == "success"
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        assert con.execute("SELECT epoch_ns(ts) FROM main.things ORDER BY id").fetchall() == [(n,) for n in ns]
