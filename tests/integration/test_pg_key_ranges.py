"""A PostgreSQL table read in key ranges (``partition_column``): parts at once, every row once, across a kill and resume.

Against the real PostgreSQL; counts are read back with DuckDB directly, part names from the store's checkpoints.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import psycopg
import pytest

ROWS = 40_000


def make_table(pg_uri: str, schema: str) -> None:
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE "{schema}".events (id bigint PRIMARY KEY, k int, note text)')
        conn.execute(f"""INSERT INTO "{schema}".events SELECT i, CASE WHEN i % 1000 = 0 THEN NULL ELSE i % 977 END, repeat('x', 40) || i FROM generate_series(1, {ROWS}) AS i""")


def config(tmp_path: Path, pg_uri: str, schema: str, column: str) -> Path:
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(f"""
sources: [{{name: pg, type: postgresql, connection_string: "{pg_uri}", db_schema: {schema}}}]
destinations: [{{name: local, type: duckdb, path: w.duckdb}}]
resources: [{{name: events, source: pg, destination: local, partition_column: {column}, batch_size: 1000}}]
""")
    return cfg


def conduit(cfg: Path, *args: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONDUIT_FAULT": fault or ""}
    return subprocess.run([sys.executable, "-m", "conduit", "run", str(cfg), "--no-progress", *args], capture_output=True, text=True, env=env, timeout=300)


def loaded(db: Path) -> list[tuple[int, int, int]]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute("SELECT count(*), count(DISTINCT id), sum(id) FROM main.events").fetchall()  # type: ignore[return-value]


def parts(project: Path) -> set[str]:
    with duckdb.connect(str(project / ".conduit" / "conduit.duckdb"), read_only=True) as con:
        return {r[0].split("#", 1)[1] for r in con.execute("SELECT part FROM checkpoints").fetchall()}


@pytest.mark.postgres
def test_a_table_read_in_key_ranges_loads_every_row_once(tmp_path: Path, pg_uri: str, pg_schema: str) -> None:
    """Eight ranges of the key plus one for its NULLs, two at a time."""
    make_table(pg_uri, pg_schema)
    done = conduit(config(tmp_path, pg_uri, pg_schema, "k"), "--workers", "2")
    assert done.returncode == 0, done.stderr
    assert loaded(tmp_path / "w.duckdb") == [(ROWS, ROWS, ROWS * (ROWS + 1) // 2)]
    found = parts(tmp_path)
    assert "k=null" in found and len(found) == 9, found  # k in 0..976: 8 ranges of 123 keys


@pytest.mark.postgres
@pytest.mark.parametrize("fault", ["staged:3", "publish"])
def test_key_ranges_killed_then_resumed_load_every_row_once(tmp_path: Path, pg_uri: str, pg_schema: str, fault: str) -> None:
    make_table(pg_uri, pg_schema)
    cfg = config(tmp_path, pg_uri, pg_schema, "id")
    crashed = conduit(cfg, "--workers", "2", fault=fault)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    resumed = conduit(cfg, "--resume", "--workers", "1")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after" in resumed.stderr
    assert loaded(tmp_path / "w.duckdb") == [(ROWS, ROWS, ROWS * (ROWS + 1) // 2)]
    assert parts(tmp_path) == {f"id=[{a},{a + 5000})" for a in range(1, ROWS, 5000)}


@pytest.mark.postgres
def test_a_partition_column_that_is_not_an_integer_is_one_clear_error(tmp_path: Path, pg_uri: str, pg_schema: str) -> None:
    make_table(pg_uri, pg_schema)
    done = conduit(config(tmp_path, pg_uri, pg_schema, "note"))
    assert done.returncode == 1
    assert "partition_column note must be an integer column" in done.stderr
