"""Incremental exactly once (issue 17, item 4): rows equal to the mark that arrive later
load (merge: ``>=``, deduplicated on the primary key), lookback needs merge, and the
state belongs to the destination table, not the resource name (with a store from the
previous version migrated). Checked with DuckDB and psycopg directly."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import uuid
from pathlib import Path

import duckdb
import polars as pl
import psycopg
import pytest

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
FILES_TO_DUCKDB = """\
sources: [{{name: files, type: parquet, path: data/}}]
destinations: [{{name: local, type: duckdb, path: w.duckdb}}]
resources:
  - {{name: events, source: files, destination: local, path: "*.parquet", incremental_column: updated_at{extra}}}
"""


def run(cfg: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "conduit", "run", str(cfg), "--no-progress"], capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=120)


def rows(ids: list[int], hours: list[int]) -> pl.DataFrame:
    return pl.DataFrame({"id": ids, "updated_at": [T0 + dt.timedelta(hours=h) for h in hours]}).with_columns(pl.col("updated_at").dt.cast_time_unit("us"))


def counts(db: Path, table: str = "events") -> tuple:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(f"SELECT count(*), count(DISTINCT id) FROM main.{table}").fetchone()  # type: ignore[return-value]


def test_rows_at_the_mark_arriving_later_load_once_in_merge(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(FILES_TO_DUCKDB.format(extra=", write_mode: merge, primary_keys: [id]"))
    rows(list(range(10)), list(range(10))).write_parquet(tmp_path / "data" / "a.parquet")
    assert run(cfg).returncode == 0
    rows([100, 101], [9, 10]).write_parquet(tmp_path / "data" / "b.parquet")  # 100 has exactly the mark
    second = run(cfg)
    assert second.returncode == 0, second.stderr
    assert counts(tmp_path / "w.duckdb") == (12, 12)
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        assert con.execute("SELECT list(id ORDER BY id) FROM main.events WHERE id >= 9").fetchone() == ([9, 100, 101],)


@pytest.mark.postgres
def test_rows_at_the_mark_from_a_postgres_source_load_once_in_merge(tmp_path: Path, pg_uri: str, pg_schema: str) -> None:
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE "{pg_schema}".src (id bigint PRIMARY KEY, updated_at timestamptz)')
        conn.execute(f"INSERT INTO \"{pg_schema}\".src SELECT g, %s::timestamptz + g * interval '1 hour' FROM generate_series(0, 9) g", [T0])
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(
        f'sources: [{{name: pg, type: postgresql, connection_string: "{pg_uri}", db_schema: {pg_schema}}}]\n'
        "destinations: [{name: local, type: duckdb, path: w.duckdb}]\n"
        "resources: [{name: events, source: pg, destination: local, table: src, incremental_column: updated_at, write_mode: merge, primary_keys: [id]}]\n",
    )
    assert run(cfg).returncode == 0
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        conn.execute(f"INSERT INTO \"{pg_schema}\".src VALUES (100, %s::timestamptz + interval '9 hours')", [T0])  # a late writer, at the mark
    second = run(cfg)
    assert second.returncode == 0, second.stderr
    assert counts(tmp_path / "w.duckdb", "src") == (11, 11)


def test_lookback_in_append_mode_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    rows([1], [1]).write_parquet(tmp_path / "data" / "a.parquet")
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(FILES_TO_DUCKDB.format(extra=", incremental_lookback: 2h"))
    done = run(cfg)
    assert done.returncode != 0
    assert "incremental_lookback" in done.stderr and "merge" in done.stderr, done.stderr
    assert not (tmp_path / "w.duckdb").exists()


@pytest.mark.postgres
def test_state_follows_the_destination_schema(tmp_path: Path, pg_uri: str, pg_schema: str) -> None:
    prod = f"p_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{prod}"')
    try:
        (tmp_path / "data").mkdir()
        rows(list(range(10)), list(range(10))).write_parquet(tmp_path / "data" / "a.parquet")
        cfg = tmp_path / "ingest.yml"
        cfg.write_text(
            "sources: [{name: files, type: parquet, path: data/}]\n"
            f'destinations: [{{name: pg, type: postgresql, connection_string: "{pg_uri}", db_schema: "${{TARGET}}"}}]\n'
            "resources: [{name: events, source: files, destination: pg, path: '*.parquet', incremental_column: updated_at}]\n",
        )
        for schema in (pg_schema, prod, pg_schema):
            done = run(cfg, {"TARGET": schema})
            assert done.returncode == 0, done.stderr
        with psycopg.connect(pg_uri) as conn:
            assert conn.execute(f'SELECT count(*), count(DISTINCT id) FROM "{pg_schema}".events').fetchone() == (10, 10)
            assert conn.execute(f'SELECT count(*), count(DISTINCT id) FROM "{prod}".events').fetchone() == (10, 10)
        with duckdb.connect(str(tmp_path / ".conduit" / "conduit.duckdb"), read_only=True) as con:
            assert sorted(con.execute("SELECT db_schema, table_name, value FROM state").fetchall()) == sorted([(pg_schema, "events", "2024-01-01 09:00:00+00:00"), (prod, "events", "2024-01-01 09:00:00+00:00")])
    finally:
        with psycopg.connect(pg_uri, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{prod}" CASCADE')


def test_null_marks_load_once_per_destination_table(tmp_path: Path) -> None:
    """A row with NULL in the incremental column loads once into each table the resource loads into."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.csv").write_text("id,seq\n1,1\n2,\n3,3\n")
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(
        "sources: [{name: files, type: csv, path: data/}]\n"
        "destinations: [{name: local, type: duckdb, path: w.duckdb, db_schema: '${TARGET}'}]\n"
        "resources: [{name: events, source: files, destination: local, path: '*.csv', incremental_column: seq}]\n",
    )
    for schema in ("dev", "prod"):
        done = run(cfg, {"TARGET": schema})
        assert done.returncode == 0, done.stderr
    (tmp_path / "data" / "b.csv").write_text("id,seq\n4,4\n5,\n")  # read by dev first: prod must still get its NULL row
    for schema in ("dev", "prod", "dev", "prod"):
        done = run(cfg, {"TARGET": schema})
        assert done.returncode == 0, done.stderr
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        for schema in ("dev", "prod"):
            assert con.execute(f"SELECT list(id ORDER BY id) FROM {schema}.events").fetchone() == ([1, 2, 3, 4, 5],)


def test_a_store_from_the_previous_version_keeps_its_marks(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    rows(list(range(10)), list(range(10))).write_parquet(tmp_path / "data" / "a.parquet")
    store = tmp_path / ".conduit" / "conduit.duckdb"
    store.parent.mkdir()
    with duckdb.connect(str(store)) as con:  # the state table as version 0.1 created it
        con.execute("CREATE TABLE state (resource VARCHAR PRIMARY KEY, incremental_column VARCHAR, value VARCHAR, value_type VARCHAR, updated_at TIMESTAMPTZ, run_id VARCHAR)")
        con.execute("INSERT INTO state VALUES ('events', 'updated_at', '2024-01-01 04:00:00+00:00', 'timestamp[us, tz=UTC]', now(), 'old-run')")
        con.execute("CREATE TABLE files_seen (resource VARCHAR, file VARCHAR, run_id VARCHAR, seen_at TIMESTAMPTZ, PRIMARY KEY (resource, file))")
        con.execute("INSERT INTO files_seen VALUES ('events', 'old.parquet', 'old-run', now())")
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(FILES_TO_DUCKDB.format(extra=""))
    done = run(cfg)
    assert done.returncode == 0, done.stderr
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        assert con.execute("SELECT list(id ORDER BY id) FROM main.events").fetchone() == ([5, 6, 7, 8, 9],)
    with duckdb.connect(str(store), read_only=True) as con:
        assert con.execute("SELECT resource, incremental_column, value, db_schema, table_name FROM state").fetchall() == [("events", "updated_at", "2024-01-01 09:00:00+00:00", "main", "events")]
        assert con.execute("SELECT file, run_id, db_schema, table_name FROM files_seen WHERE file = 'old.parquet'").fetchall() == [("old.parquet", "old-run", "main", "events")]
