"""Exactly once into PostgreSQL (parallel COPY staging), proven with real SIGKILLs, and
incremental loads from a PostgreSQL source table; checked with ADBC directly."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import adbc_driver_postgresql.dbapi as pg
import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from test_resume import FILES, ROWS_PER_FILE, make_data

pytestmark = pytest.mark.postgres

CONFIG = """\
sources: [{{name: files, type: csv, path: data/}}]
destinations: [{{name: pg, type: postgresql, connection_string: "{uri}", db_schema: {schema}}}]
resources:
  - {{name: events, source: files, destination: pg, path: "events-*.csv", write_mode: {mode}, primary_keys: [id], batch_size: 5000}}
"""


def sql(uri: str, text: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with pg.connect(uri, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(text, params)
        return cur.fetchall() if cur.description else []


def conduit(cfg: Path, *args: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONDUIT_FAULT": fault or ""}
    return subprocess.run([sys.executable, "-m", "conduit", "run", str(cfg), "--no-progress", *args], capture_output=True, text=True, env=env, timeout=300)


def fingerprint(uri: str, schema: str) -> tuple[Any, ...]:
    return sql(uri, f"SELECT count(*), count(DISTINCT id), md5(string_agg(id::text || ':' || amount::text || ':' || name, ',' ORDER BY id)) FROM \"{schema}\".events")[0]


def expected(tmp_path: Path) -> tuple[Any, ...]:
    """The same fingerprint computed from the source files with DuckDB (bad amounts excluded)."""
    glob = str(tmp_path / "data" / "events-*.csv")
    with duckdb.connect() as con:
        return con.execute(f"SELECT count(*), count(DISTINCT id), md5(string_agg(id::VARCHAR || ':' || amount || ':' || name, ',' ORDER BY id::BIGINT)) FROM read_csv('{glob}', all_varchar = true) WHERE amount <> 'bad'").fetchone()  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("fault", "mode"),
    [
        pytest.param("read:5", "append", id="during-read"),
        pytest.param("staged:3", "append", id="after-chunk-staged"),
        pytest.param("staged:6", "merge", id="late-chunk-merge"),
        pytest.param("publish", "append", id="before-publish"),
        pytest.param("published", "append", id="after-publish-before-store"),
    ],
)
def test_kill_then_resume_into_postgres(tmp_path: Path, pg_uri: str, pg_schema: str, fault: str, mode: str) -> None:
    make_data(tmp_path / "data")
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(CONFIG.format(uri=pg_uri, schema=pg_schema, mode=mode))
    crashed = conduit(cfg, fault=fault)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    if fault != "published":  # untouched until the publish commits
        assert sql(pg_uri, "SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = 'events'", [pg_schema]) == [(0,)]
    resumed = conduit(cfg, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert fingerprint(pg_uri, pg_schema) == expected(tmp_path)
    assert sql(pg_uri, f'SELECT count(*) FROM "{pg_schema}"._conduit_loads') == [(1,)]
    with duckdb.connect(str(tmp_path / ".conduit" / "conduit.duckdb"), read_only=True) as con:
        rows = con.execute("SELECT rows_read, rows_written, rows_dlq FROM resource_runs").fetchall()
    good = expected(tmp_path)[0]
    assert rows == [(FILES * ROWS_PER_FILE, good, FILES * ROWS_PER_FILE - good)]
    staging = sql(pg_uri, "SELECT count(*) FROM pg_tables WHERE tablename LIKE '\\_conduit\\_stage\\_%' AND schemaname = $1", [pg_schema])
    assert staging == [(0,)]


def make_parquet(folder: Path) -> None:
    """The same events as Parquet, in row groups (12,000 rows) that chunks (two 5,000-row batches) end inside."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in range(FILES):
        ids = pa.array(range(f * ROWS_PER_FILE, (f + 1) * ROWS_PER_FILE), pa.int64())
        amount = pc.cast(pc.bit_wise_and(pc.multiply(ids, 7), 1023), pa.int64())
        name = pc.binary_join_element_wise("name-", pc.cast(ids, pa.string()), "")
        pq.write_table(pa.table({"id": ids, "amount": amount, "name": name}), folder / f"events-{f}.parquet", row_group_size=12_000)


@pytest.mark.parametrize(
    ("fault", "resume_args"),
    [
        pytest.param("read:7", [], id="during-read"),
        pytest.param("staged:5", [], id="after-chunk-staged"),
        pytest.param("staged:5", ["--batch-size", "3000"], id="resume-cuts-other-batches"),
    ],
)
def test_kill_then_resume_parquet_into_postgres(tmp_path: Path, pg_uri: str, pg_schema: str, fault: str, resume_args: list[str]) -> None:
    """A resume starts at the row group holding the first unstaged row and loads every row once.

    Resuming with another batch size puts the first unstaged row inside a batch.
    """
    make_parquet(tmp_path / "data")
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(CONFIG.format(uri=pg_uri, schema=pg_schema, mode="append").replace("csv", "parquet"))
    crashed = conduit(cfg, fault=fault)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    resumed = conduit(cfg, "--resume", *resume_args)
    assert resumed.returncode == 0, resumed.stderr
    glob = str(tmp_path / "data" / "events-*.parquet")
    with duckdb.connect() as con:
        want = con.execute(f"SELECT count(*), count(DISTINCT id), md5(string_agg(id::VARCHAR || ':' || amount || ':' || name, ',' ORDER BY id)) FROM read_parquet('{glob}')").fetchone()
    assert want is not None and want[0] == FILES * ROWS_PER_FILE
    assert fingerprint(pg_uri, pg_schema) == want
    with duckdb.connect(str(tmp_path / ".conduit" / "conduit.duckdb"), read_only=True) as con:
        assert con.execute("SELECT rows_read, rows_written FROM resource_runs").fetchall() == [(want[0], want[0])]


@pytest.mark.parametrize(("name_type", "direct"), [pytest.param("text", True, id="types-match"), pytest.param("varchar(100)", False, id="types-differ")])
def test_append_into_an_existing_table_killed_then_resumed(tmp_path: Path, pg_uri: str, pg_schema: str, name_type: str, direct: bool) -> None:
    """Where the table's types are the staged ones, an append COPYs straight into it, in one transaction.

    A kill leaves the table as it was and nothing staged, and the resume loads from the
    start. Where a type differs (strings, staged as text, into a varchar column), the chunks are staged
    and committed one by one, and the resume continues after them.
    """
    sql(pg_uri, f'CREATE TABLE "{pg_schema}".events (id bigint PRIMARY KEY, amount bigint, name {name_type})')
    sql(pg_uri, f"INSERT INTO \"{pg_schema}\".events VALUES (-1, 0, 'before')")
    make_parquet(tmp_path / "data")
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(CONFIG.format(uri=pg_uri, schema=pg_schema, mode="append").replace("csv", "parquet"))
    crashed = conduit(cfg, "--batch-size", "1000", fault="staged:5")  # more chunks than the resume will have
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert sql(pg_uri, f'SELECT id, name FROM "{pg_schema}".events') == [(-1, "before")]
    [(stages,)] = sql(pg_uri, "SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename LIKE '\\_conduit\\_stage\\_%'", [pg_schema])
    [(chunks,)] = sql(pg_uri, f'SELECT count(*) FROM "{pg_schema}"._conduit_chunks')
    assert (stages, chunks > 0) == ((0, False) if direct else (1, True))
    resumed = conduit(cfg, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert ("nothing was durably staged" in resumed.stderr, "resuming after" in resumed.stderr) == (direct, not direct)
    glob = str(tmp_path / "data" / "events-*.parquet")
    with duckdb.connect() as con:
        want = con.execute(f"SELECT count(*), md5(string_agg(id::VARCHAR || ':' || amount || ':' || name, ',' ORDER BY id)) FROM read_parquet('{glob}')").fetchone()
    got = sql(pg_uri, f"SELECT count(*), md5(string_agg(id::text || ':' || amount::text || ':' || name, ',' ORDER BY id)) FROM \"{pg_schema}\".events WHERE id >= 0")
    assert got == [want]
    assert sql(pg_uri, f'SELECT name FROM "{pg_schema}".events WHERE id < 0') == [("before",)]
    with duckdb.connect(str(tmp_path / ".conduit" / "conduit.duckdb"), read_only=True) as con:  # no checkpoint of the rolled-back attempt survives
        assert con.execute("SELECT sum(rows) FROM checkpoints").fetchall() == [(FILES * ROWS_PER_FILE,)]
        assert con.execute("SELECT rows_read, rows_written FROM resource_runs").fetchall() == [(FILES * ROWS_PER_FILE, FILES * ROWS_PER_FILE)]


def test_direct_append_killed_after_its_commit_is_recorded_once(tmp_path: Path, pg_uri: str, pg_schema: str) -> None:
    """Killed between the publish commit and the store's record: the resume records the load, loads nothing again."""
    sql(pg_uri, f'CREATE TABLE "{pg_schema}".events (id bigint PRIMARY KEY, amount bigint, name text)')
    make_parquet(tmp_path / "data")
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(CONFIG.format(uri=pg_uri, schema=pg_schema, mode="append").replace("csv", "parquet"))
    crashed = conduit(cfg, fault="published")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert sql(pg_uri, f'SELECT count(*) FROM "{pg_schema}".events') == [(FILES * ROWS_PER_FILE,)]
    resumed = conduit(cfg, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "already published" in resumed.stderr
    assert sql(pg_uri, f'SELECT count(*), count(DISTINCT id) FROM "{pg_schema}".events') == [(FILES * ROWS_PER_FILE, FILES * ROWS_PER_FILE)]
    with duckdb.connect(str(tmp_path / ".conduit" / "conduit.duckdb"), read_only=True) as con:
        assert con.execute("SELECT status, rows_read, rows_written FROM resource_runs").fetchall() == [("success", FILES * ROWS_PER_FILE, FILES * ROWS_PER_FILE)]


SCALARS = pa.table(
    {
        "id": pa.array([1, 2, 3], pa.int64()),
        "flag": pa.array([True, None, False]),
        "small": pa.array([-32768, None, 32767], pa.int16()),
        "medium": pa.array([-(2**31), 7, None], pa.int32()),
        "real4": pa.array([1.5, None, -0.25], pa.float32()),
        "double8": pa.array([1e300, -2.5, None], pa.float64()),
        "money": pa.array([Decimal("12345678901234567890123456.1234567891"), None, Decimal("-0.0000000001")], pa.decimal128(38, 10)),
        "price": pa.array([Decimal("-1.50"), Decimal("0.00"), None], pa.decimal128(15, 2)),
        "text": pa.array(["héllo wörld ✓ 日本", None, ""], pa.string()),
        "day": pa.array([dt.date(2024, 2, 29), None, dt.date(1900, 1, 1)], pa.date32()),
        "clock": pa.array([dt.time(23, 59, 59, 999999), None, dt.time(0, 0)], pa.time64("us")),
        "ts": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5, 678901), None, dt.datetime(1970, 1, 1)], pa.timestamp("us")),
        "tstz": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC), None, dt.datetime(1999, 12, 31, 23, 59, tzinfo=dt.UTC)], pa.timestamp("us", "UTC")),
        "blob": pa.array([b"\x00\x01\xff", None, b""], pa.binary()),
    }
)


def test_direct_append_round_trips_every_scalar_type_and_respects_rules(tmp_path: Path, pg_uri: str, pg_schema: str) -> None:
    """The table a first load created takes later appends straight in (killed: nothing lands, nothing staged); values survive.

    A table with an INSERT rule is appended to through the stage: COPY would ignore the rule.
    """
    (tmp_path / "data").mkdir()
    pq.write_table(SCALARS, tmp_path / "data" / "events-0.parquet")
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(CONFIG.format(uri=pg_uri, schema=pg_schema, mode="append").replace("csv", "parquet").replace("primary_keys: [id], ", ""))
    assert conduit(cfg).returncode == 0
    crashed = conduit(cfg, fault="staged:1")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert sql(pg_uri, f'SELECT count(*) FROM "{pg_schema}".events') == [(3,)]
    assert sql(pg_uri, f'SELECT count(*) FROM "{pg_schema}"._conduit_chunks') == [(0,)]
    assert conduit(cfg, "--resume").returncode == 0
    with pg.connect(pg_uri) as conn, conn.cursor() as cur:
        cur.execute(f'SELECT * FROM "{pg_schema}".events ORDER BY id')
        got = cur.fetch_arrow_table().to_pylist()
    for row in got:  # ADBC reads numeric as text
        row.update({c: None if row[c] is None else Decimal(row[c]) for c in ("money", "price")})
    assert got[0::2] == got[1::2] == SCALARS.to_pylist()
    sql(pg_uri, f'CREATE TABLE "{pg_schema}".redirected (LIKE "{pg_schema}".events)')
    sql(pg_uri, f'CREATE RULE redirect AS ON INSERT TO "{pg_schema}".events DO INSTEAD INSERT INTO "{pg_schema}".redirected VALUES (NEW.*)')
    assert conduit(cfg).returncode == 0
    assert sql(pg_uri, f'SELECT count(*) FROM "{pg_schema}".events') == [(6,)]
    assert sql(pg_uri, f'SELECT count(*) FROM "{pg_schema}".redirected') == [(3,)]


def test_constraint_violation_mid_run_leaves_target_unchanged(tmp_path: Path, pg_uri: str, pg_schema: str) -> None:
    """A failing destination in a later chunk: the resource fails with the server's message."""
    sql(pg_uri, f'CREATE TABLE "{pg_schema}".events (id bigint PRIMARY KEY, amount bigint, name text)')
    sql(pg_uri, f"INSERT INTO \"{pg_schema}\".events VALUES (150000, 1, 'existing')")
    make_data(tmp_path / "data")
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(CONFIG.format(uri=pg_uri, schema=pg_schema, mode="append"))
    failed = conduit(cfg)
    assert failed.returncode == 1
    assert "duplicate key value violates unique constraint" in failed.stderr and "23505" in failed.stderr
    assert sql(pg_uri, f'SELECT id, name FROM "{pg_schema}".events') == [(150000, "existing")]


INCREMENTAL = """\
sources: [{{name: app, type: postgresql, connection_string: "{uri}"}}]
destinations: [{{name: local, type: duckdb, path: w.duckdb}}]
resources:
  - {{name: orders, source: app, destination: local, query: "SELECT id, updated_at FROM \\"{schema}\\".orders", incremental_column: updated_at}}
"""


def test_incremental_postgres_source_three_runs(tmp_path: Path, pg_uri: str, pg_schema: str) -> None:
    sql(pg_uri, f'CREATE TABLE "{pg_schema}".orders (id bigint, updated_at timestamptz)')

    def add(start: int, n: int) -> None:
        sql(pg_uri, f"INSERT INTO \"{pg_schema}\".orders SELECT g, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 hour' FROM generate_series({start}, {start + n - 1}) g")

    cfg = tmp_path / "ingest.yml"
    cfg.write_text(INCREMENTAL.format(uri=pg_uri, schema=pg_schema))
    written = []
    for start, n in ((0, 100), (100, 30), (130, 0), (130, 5)):
        add(start, n) if n else None
        run = conduit(cfg)
        assert run.returncode == 0, run.stderr
        with duckdb.connect(str(tmp_path / ".conduit" / "conduit.duckdb"), read_only=True) as con:
            written.append(con.execute("SELECT rows_read, rows_written FROM resource_runs ORDER BY started_at DESC LIMIT 1").fetchone())
        if n == 0:
            assert "0 rows loaded" in run.stderr and "nothing newer than" in run.stderr
    assert written == [(100, 100), (30, 30), (0, 0), (5, 5)]  # the mark is pushed into the SQL: old rows are not even read
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*), count(DISTINCT id), max(id) FROM main.orders").fetchone() == (135, 135, 134)


def test_resume_after_a_server_crash_stages_again_what_crash_recovery_emptied(tmp_path: Path) -> None:
    """A merge into an existing table stages into an UNLOGGED table; crash recovery empties it while the logged ledger keeps its chunks.

    A resume that trusted the ledger would skip those rows and publish a load without them.
    """
    import services

    cluster = services.Cluster()  # its own server: this test crashes it
    uri = cluster.uri
    sql(uri, "CREATE SCHEMA s")
    sql(uri, "CREATE TABLE s.events (id bigint PRIMARY KEY, amount bigint, name text)")  # merge into an existing table
    make_data(tmp_path / "data")
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(CONFIG.format(uri=uri, schema="s", mode="merge"))
    crashed = conduit(cfg, fault="staged:3")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    sql(uri, "CHECKPOINT")  # the ledger rows are on disk; the unlogged stage never is
    cluster.crash()
    cluster.start()
    [(stage, persistence)] = sql(uri, "SELECT relname, relpersistence FROM pg_class WHERE relname LIKE '\\_conduit\\_stage\\_%'")
    assert persistence == "u"
    assert sql(uri, "SELECT count(*) > 0 FROM s._conduit_chunks") == [(True,)]
    assert sql(uri, f'SELECT count(*) FROM s."{stage}"') == [(0,)]
    resumed = conduit(cfg, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "are gone from s._conduit_stage_" in resumed.stderr
    assert "staging from the start" in resumed.stderr
    assert fingerprint(uri, "s") == expected(tmp_path)
    with duckdb.connect(str(tmp_path / ".conduit" / "conduit.duckdb"), read_only=True) as con:
        rows = con.execute("SELECT rows_read, rows_written, rows_dlq FROM resource_runs").fetchall()
    good = expected(tmp_path)[0]
    assert rows == [(FILES * ROWS_PER_FILE, good, FILES * ROWS_PER_FILE - good)]


@pytest.mark.parametrize("loss", ["TRUNCATE", "DROP TABLE"])
def test_resume_stages_again_when_the_staged_rows_are_gone(tmp_path: Path, pg_uri: str, pg_schema: str, loss: str) -> None:
    """Whatever emptied or removed the stage (crash recovery, an operator), a resume loads every row once."""
    sql(pg_uri, f'CREATE TABLE "{pg_schema}".events (id bigint PRIMARY KEY, amount bigint, name text)')
    make_data(tmp_path / "data")
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(CONFIG.format(uri=pg_uri, schema=pg_schema, mode="merge"))  # an append into it would skip the stage
    assert conduit(cfg, fault="staged:3").returncode == -signal.SIGKILL
    [(stage,)] = sql(pg_uri, "SELECT tablename FROM pg_tables WHERE schemaname = $1 AND tablename LIKE '\\_conduit\\_stage\\_%'", [pg_schema])
    sql(pg_uri, f'{loss} "{pg_schema}"."{stage}"')
    resumed = conduit(cfg, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert fingerprint(pg_uri, pg_schema) == expected(tmp_path)
    assert sql(pg_uri, f'SELECT count(*) FROM "{pg_schema}"._conduit_chunks') == [(0,)]
    with duckdb.connect(str(tmp_path / ".conduit" / "conduit.duckdb"), read_only=True) as con:  # the checkpoints are the new staging's
        assert con.execute("SELECT sum(rows) FROM checkpoints").fetchall() == [(expected(tmp_path)[0],)]
