"""PostgreSQL source and destination end to end through the CLI, checked with ADBC directly."""

from __future__ import annotations

import datetime as dt
import socket
from decimal import Decimal
from pathlib import Path
from typing import Any

import adbc_driver_postgresql.dbapi as pg
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from cli_run import invoke as run_cli

pytestmark = pytest.mark.postgres


def sql(uri: str, text: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with pg.connect(uri, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(text, params)
        return cur.fetchall() if cur.description else []


def write(tmp_path: Path, config: dict[str, Any]) -> Path:
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    return cfg


def pg_dest(uri: str, schema: str, **extra: Any) -> dict[str, Any]:
    return {"name": "pg", "type": "postgresql", "connection_string": uri, "db_schema": schema, **extra}


def test_csv_to_postgres_types_keys_and_quoting(tmp_path: Path, pg_uri: str, pg_schema: str) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "orders.csv").write_text('id,amount,day,at,ok,payload,Weird Col; --\n1,10.50,2024-01-02,2024-01-02T03:04:05Z,true,"{""a"": 1}",x\n2,-3.25,2024-02-03,2024-02-03T00:00:00+02:00,false,,y\n')
    cfg = write(
        tmp_path,
        {
            "sources": [{"name": "files", "type": "csv", "path": "data"}],
            "destinations": [pg_dest(pg_uri, pg_schema)],
            "resources": [{"name": "orders", "source": "files", "destination": "pg", "path": "orders.csv", "table": f'{pg_schema}.we"ird; DROP TABLE x', "primary_keys": ["id"], "columns": {"payload": "json", "amount": "decimal(12,2)"}}],
        },
    )
    code, out = run_cli("run", str(cfg), "--no-progress")
    assert code == 0, out
    types = dict(sql(pg_uri, "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0", [f'"{pg_schema}"."we""ird; DROP TABLE x"']))
    assert types == {"id": "bigint", "amount": "numeric(12,2)", "day": "date", "at": "timestamp with time zone", "ok": "boolean", "payload": "jsonb", "Weird Col; --": "text"}
    rows = sql(pg_uri, f'SELECT id, amount::text, at = \'2024-02-02T22:00:00Z\'::timestamptz, payload->>\'a\' FROM "{pg_schema}"."we""ird; DROP TABLE x" ORDER BY id')
    assert rows == [(1, "10.50", False, "1"), (2, "-3.25", True, None)]
    pk = sql(pg_uri, "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = to_regclass($1) AND contype = 'p'", [f'"{pg_schema}"."we""ird; DROP TABLE x"'])
    assert pk == [("PRIMARY KEY (id)",)]


def test_postgres_to_duckdb_numeric_and_incremental(tmp_path: Path, pg_uri: str, pg_schema: str) -> None:
    sql(pg_uri, f'CREATE TABLE "{pg_schema}".src (id bigint, price numeric(20,4), name text, updated timestamptz)')
    sql(pg_uri, f"INSERT INTO \"{pg_schema}\".src SELECT g, g * 1.2345, 'n' || g, '2024-01-01'::timestamptz + g * interval '1 hour' FROM generate_series(1, 50) g")
    cfg = write(
        tmp_path,
        {
            "sources": [{"name": "app", "type": "postgresql", "connection_string": pg_uri, "db_schema": pg_schema}],
            "destinations": [{"name": "local", "type": "duckdb", "path": "wh.duckdb"}],
            "resources": [{"name": "src", "source": "app", "destination": "local", "incremental_column": "updated"}],
        },
    )
    code, out = run_cli("run", str(cfg), "--no-progress")
    assert code == 0, out
    with duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*), sum(price), typeof(any_value(price)) FROM main.src").fetchall() == [(50, Decimal("1573.9875"), "DECIMAL(20,4)")]
    sql(pg_uri, f"INSERT INTO \"{pg_schema}\".src VALUES (51, 1.5, 'late', '2030-01-01'), (0, 9, 'old', '2000-01-01')")
    code, out = run_cli("run", str(cfg), "--no-progress")
    assert code == 0, out
    with duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*), max(id) FROM main.src").fetchall() == [(51, 51)]


def test_postgres_to_postgres_query_merge(tmp_path: Path, pg_uri: str, pg_schema: str) -> None:
    sql(pg_uri, f'CREATE TABLE "{pg_schema}".events (id int, k text, v numeric(10,2), tags jsonb)')
    sql(pg_uri, f"INSERT INTO \"{pg_schema}\".events VALUES (1, 'a', 1.10, '[1]'), (2, 'b', 2.20, NULL), (3, 'a', 3.30, '{{\"x\": 2}}')")
    cfg = write(
        tmp_path,
        {
            "sources": [{"name": "app", "type": "postgresql", "connection_string": pg_uri}],
            "destinations": [pg_dest(pg_uri, pg_schema)],
            "resources": [{"name": "latest", "source": "app", "destination": "pg", "query": f'SELECT k, v, id, tags FROM "{pg_schema}".events ORDER BY id', "write_mode": "merge", "primary_keys": ["k"]}],
        },
    )
    code, out = run_cli("run", str(cfg), "--no-progress")
    assert code == 0, out
    assert sql(pg_uri, f'SELECT k, v::text, id FROM "{pg_schema}".latest ORDER BY k') == [("a", "3.30", 3), ("b", "2.20", 2)]
    types = dict(sql(pg_uri, "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0", [f'"{pg_schema}".latest']))
    assert types["v"] == "numeric(10,2)"
    assert types["id"] == "integer"


def test_schema_evolution_recorded(tmp_path: Path, pg_uri: str, pg_schema: str) -> None:
    (tmp_path / "data").mkdir()
    pq.write_table(pa.table({"id": pa.array([1], pa.int32())}), tmp_path / "data" / "a.parquet")
    config = {
        "sources": [{"name": "files", "type": "parquet", "path": "data"}],
        "destinations": [pg_dest(pg_uri, pg_schema)],
        "resources": [{"name": "t", "source": "files", "destination": "pg", "path": "a.parquet", "schema_evolution": "auto"}],
    }
    cfg = write(tmp_path, config)
    assert run_cli("run", str(cfg), "--no-progress")[0] == 0
    pq.write_table(pa.table({"id": pa.array([2**40], pa.int64()), "note": ["n"]}), tmp_path / "data" / "a.parquet")
    config["resources"][0]["schema_evolution"] = "manual"
    write(tmp_path, config)
    code, out = run_cli("run", str(cfg), "--no-progress")
    assert code == 1
    assert f'ALTER TABLE "{pg_schema}"."t" ADD COLUMN "note" text;' in out
    assert f'ALTER TABLE "{pg_schema}"."t" ALTER COLUMN "id" TYPE bigint;' in out
    config["resources"][0]["schema_evolution"] = "auto"
    write(tmp_path, config)
    code, out = run_cli("run", str(cfg), "--no-progress")
    assert code == 0, out
    assert sql(pg_uri, f'SELECT id, note FROM "{pg_schema}".t ORDER BY id') == [(1, None), (2**40, "n")]
    code, out = run_cli("query", "SELECT version, change FROM schema_versions WHERE resource = 't' ORDER BY version", "--config", str(cfg), "--format", "csv")
    assert "+ note" in out and "~ id" in out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        pytest.param({"host": "nonexistent.invalid", "port": 5432, "database": "test"}, 'could not translate host name "nonexistent.invalid"', id="unreachable-host"),
        pytest.param({"host": "127.0.0.1", "port": "FREE", "database": "test"}, "connection refused", id="refused-port"),
        pytest.param({"host": "127.0.0.1", "port": "PG", "database": "test", "user": "nobody_here"}, 'role "nobody_here" does not exist', id="wrong-user"),
        pytest.param({"host": "127.0.0.1", "port": "PG", "database": "no_such_db"}, 'database "no_such_db" does not exist', id="wrong-database"),
    ],
)
def test_validate_connection_errors(tmp_path: Path, pg_uri: str, keys: dict[str, Any], expected: str) -> None:
    from urllib.parse import urlsplit

    port = urlsplit(pg_uri).port or 5432
    keys = {**keys, "port": {"FREE": _free_port(), "PG": port}.get(keys["port"], keys["port"])}
    keys.setdefault("user", "postgres")
    cfg = write(
        tmp_path,
        {
            "sources": [{"name": "files", "type": "csv", "path": "."}],
            "destinations": [{"name": "pg", "type": "postgresql", "password": "Sup3rS3cret!", "connect_timeout": 5, **keys}],
            "resources": [{"name": "r", "source": "files", "destination": "pg"}],
        },
    )
    code, out = run_cli("validate", str(cfg))
    assert code == 1
    assert "Sup3rS3cret" not in out
    error_lines = [ln for ln in out.splitlines() if "cannot connect" in ln]
    assert len(error_lines) == 1, out
    assert expected in error_lines[0]
    assert f"destination pg: cannot connect to postgresql://{keys['user']}@" in error_lines[0]


def test_constraint_error_has_sqlstate_and_is_not_retried(tmp_path: Path, pg_uri: str, pg_schema: str) -> None:
    from conduit.connectors.postgres.connection import PostgresOptions
    from conduit.connectors.postgres.destination import PostgresDestination
    from conduit.errors import DestinationError

    dest = PostgresDestination("pg", PostgresOptions(connection_string=pg_uri, db_schema=pg_schema), tmp_path)
    sql(pg_uri, f'CREATE TABLE "{pg_schema}".c (id int PRIMARY KEY)')
    try:
        with pytest.raises(DestinationError) as info:
            dest._run([(f'INSERT INTO "{pg_schema}".c VALUES (1), (1)', None)], "insert")
    finally:
        dest.close()
    assert info.value.sqlstate == "23505"
    assert not info.value.retryable
    assert "(SQLSTATE 23505)" in str(info.value)


def test_replace_keeps_old_table_until_commit_and_dates(tmp_path: Path, pg_uri: str, pg_schema: str) -> None:
    (tmp_path / "data").mkdir()
    pq.write_table(pa.table({"id": [1, 2], "d": [dt.date(2024, 1, 1), None], 'we"ird': ["q", "r"]}), tmp_path / "data" / "a.parquet")
    sql(pg_uri, f'CREATE TABLE "{pg_schema}".r (old_col text)')
    sql(pg_uri, f"INSERT INTO \"{pg_schema}\".r VALUES ('old')")
    cfg = write(
        tmp_path,
        {
            "sources": [{"name": "files", "type": "parquet", "path": "data"}],
            "destinations": [pg_dest(pg_uri, pg_schema, copy_streams=3)],
            "resources": [{"name": "r", "source": "files", "destination": "pg", "path": "a.parquet", "write_mode": "replace", "primary_keys": ["id"]}],
        },
    )
    code, out = run_cli("run", str(cfg), "--no-progress")
    assert code == 0, out
    assert sql(pg_uri, f'SELECT id, d, "we""ird" FROM "{pg_schema}".r ORDER BY id') == [(1, dt.date(2024, 1, 1), "q"), (2, None, "r")]
    assert sql(pg_uri, "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname LIKE '\\_conduit\\_stage%'", [pg_schema]) == [(0,)]
    assert sql(pg_uri, "SELECT conname FROM pg_constraint WHERE conrelid = to_regclass($1)", [f'"{pg_schema}".r']) == [("r_pkey",)]


def test_workers_creating_the_same_staging_table_at_once_all_succeed(tmp_path: Path, pg_uri: str, pg_schema: str) -> None:
    """Ray workers each open the destination (its ledger tables) and ensure the load's staging table (and schemas) on their own connections: ``CREATE ... IF NOT EXISTS`` racing on the catalog must not fail one of them."""
    import threading

    from conduit.config import ResolvedTable
    from conduit.connectors.base import Load
    from conduit.connectors.postgres.connection import PostgresOptions
    from conduit.connectors.postgres.destination import PostgresDestination

    schema = pa.schema([pa.field("id", pa.int64()), pa.field("note", pa.large_string())])
    errors: list[BaseException] = []
    for attempt in range(5):
        db_schema = f"{pg_schema}_race{attempt}"  # a new schema too: CREATE SCHEMA IF NOT EXISTS races as well
        load = Load(f"race{attempt}_t", f"race{attempt}", "t", f"{db_schema}.t", ResolvedTable(write_mode="replace"))
        dests = [PostgresDestination("pg", PostgresOptions(connection_string=pg_uri, db_schema=f"{pg_schema}_ledger{attempt}"), tmp_path) for _ in range(6)]
        barrier = threading.Barrier(len(dests))

        def ensure(dest: PostgresDestination) -> None:
            barrier.wait()
            try:
                dest.check()  # the ledger's schema and tables
                dest._ensure_stage(load, schema)
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)

        threads = [threading.Thread(target=ensure, args=(d,)) for d in dests]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for d in dests:
            d.close()
        sql(pg_uri, f'DROP SCHEMA IF EXISTS "{db_schema}" CASCADE')
        assert sql(pg_uri, "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1", [f"{pg_schema}_ledger{attempt}"]) == [(2,)]
        sql(pg_uri, f'DROP SCHEMA IF EXISTS "{pg_schema}_ledger{attempt}" CASCADE')
    assert errors == []
