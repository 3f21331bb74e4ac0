"""What a failed run leaves behind: nothing in the destination (stage tables, ledger rows); `conduit gc`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import psycopg
import pytest
from test_resume import make_data

from conduit._text import plural

PG = """\
sources: [{{name: files, type: csv, path: data/}}]
destinations: [{{name: pg, type: postgresql, connection_string: "{uri}", db_schema: {schema}}}]
resources:
  - {{name: events, source: files, destination: pg, path: "events-*.csv", write_mode: {mode}, batch_size: 5000, columns: {{amount: bigint}}, max_dlq_rows: 3}}
"""
DUCK = """\
sources: [{name: files, type: csv, path: data/}]
destinations: [{name: local, type: duckdb, path: out.duckdb}]
resources:
  - {name: events, source: files, destination: local, path: "events-*.csv", batch_size: 2500, columns: {amount: bigint}, max_dlq_rows: 3}
"""


def conduit(*args: str, fault: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONDUIT_FAULT": fault, "CONDUIT_PAUSE": ""}
    return subprocess.run([sys.executable, "-m", "conduit", *args], capture_output=True, text=True, env=env, timeout=300)


def pg_leftovers(uri: str, schema: str) -> tuple[list[str], int]:
    with psycopg.connect(uri, autocommit=True) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename LIKE '\\_conduit\\_stage\\_%%'", [schema]).fetchall()]
        row = conn.execute(f'SELECT count(*) FROM "{schema}"._conduit_chunks').fetchone()
    return tables, int(row[0]) if row else 0


def duck_leftovers(db: Path) -> tuple[list[str], int]:
    with duckdb.connect(str(db), read_only=True) as con:
        tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE table_name LIKE '\\_conduit\\_stage\\_%' ESCAPE '\\'").fetchall()]
        row = con.execute("SELECT count(*) FROM main._conduit_chunks").fetchone()
    return tables, int(row[0]) if row else 0


@pytest.mark.postgres
@pytest.mark.parametrize("mode", ["replace", "merge"])
def test_a_failed_run_leaves_no_stage_tables_or_ledger_rows_in_postgres(tmp_path: Path, pg_uri: str, pg_schema: str, mode: str) -> None:
    make_data(tmp_path / "data")  # the second file's 6 bad amounts pass max_dlq_rows: 3 after chunks were staged
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(PG.format(uri=pg_uri, schema=pg_schema, mode=mode).replace("write_mode: merge", "write_mode: merge, primary_keys: [id]"))
    failed = conduit("run", str(cfg), "--no-progress")
    assert failed.returncode == 1, failed.stderr
    assert pg_leftovers(pg_uri, pg_schema) == ([], 0)


def test_a_failed_run_leaves_no_stage_tables_or_ledger_rows_in_duckdb(tmp_path: Path) -> None:
    make_data(tmp_path / "data")
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(DUCK)
    failed = conduit("run", str(cfg), "--no-progress")
    assert failed.returncode == 1, failed.stderr
    assert duck_leftovers(tmp_path / "out.duckdb") == ([], 0)


KEPT = """\
sources: [{{name: files, type: csv, path: data/}}]
destinations: [{dest}]
resources:
  - {{name: {name}, source: files, destination: d, path: "events-*.csv", batch_size: 2500}}
"""


def gc(cfg: Path, *args: str) -> list[str]:
    done = conduit("gc", str(cfg), *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()


@pytest.mark.parametrize("kind", ["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_gc_removes_only_what_no_resumable_run_needs(tmp_path: Path, kind: str, request: pytest.FixtureRequest) -> None:
    if kind == "postgresql":
        uri, schema = request.getfixturevalue("pg_uri"), request.getfixturevalue("pg_schema")
        dest, fault = f'{{name: d, type: postgresql, connection_string: "{uri}", db_schema: {schema}}}', "staged:5"  # of 9 chunks (8 batches each, staged in parallel)

        def leftovers() -> tuple[list[str], int]:
            return pg_leftovers(uri, schema)
    else:
        dest, fault = "{name: d, type: duckdb, path: out.duckdb}", "staged:4"  # into the second file, which has bad rows

        def leftovers() -> tuple[list[str], int]:
            return duck_leftovers(tmp_path / "out.duckdb")

    make_data(tmp_path / "data")
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(KEPT.format(dest=dest, name="events"))
    crashed = conduit("run", str(cfg), "--no-progress", fault=fault)
    assert crashed.returncode < 0, crashed.stderr
    staged = leftovers()
    assert staged[0] and staged[1] > 0
    parts = list((tmp_path / ".conduit" / "dlq").glob("*/_parts"))
    assert parts  # the killed run's dead letters so far, kept for its resume
    assert gc(cfg, "--dry-run") == ["0 leftovers found"]  # the killed run is resumable: nothing to remove
    assert gc(cfg) == ["0 leftovers removed"]
    assert leftovers() == staged
    cfg.write_text(KEPT.format(dest=dest, name="renamed"))  # a new config: the killed run is superseded
    assert conduit("run", str(cfg), "--no-progress").returncode == 0
    assert leftovers() == staged  # the superseding run dropped only what its own resources staged
    listed = gc(cfg, "--dry-run")
    assert any(line.startswith("would remove d: staging table ") and "_events" in line for line in listed), listed
    assert any("ledger rows of load" in line or "ledger row of load" in line for line in listed) and any("dead letters:" in line for line in listed)
    assert listed[-1] == f"{plural(len(listed) - 1, 'leftover')} found"
    assert leftovers() == staged and all(p.exists() for p in parts)
    removed = gc(cfg)
    assert removed == [line.replace("would remove", "removed", 1) for line in listed[:-1]] + [f"{plural(len(listed) - 1, 'leftover')} removed"]
    assert leftovers() == ([], 0)
    assert not any(p.exists() for p in parts)
    assert gc(cfg) == ["0 leftovers removed"]
