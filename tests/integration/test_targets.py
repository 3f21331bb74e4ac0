"""dev and prod targets load into separate places, each with its own store, marks and dead letters.

Each target is checked independently: DuckDB files and PostgreSQL schemas read directly.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from cli_run import invoke

import conduit

DUCKDB_CONFIG = """\
default_target: dev
sources:
  - {name: files, type: csv, path: data/}
destinations:
  - {name: warehouse, type: duckdb, path: out/base.duckdb}
resources:
  - name: people
    source: files
    destination: warehouse
    path: "people*.csv"
    incremental_column: id
    columns: {id: bigint}
targets:
  dev:
    destinations:
      warehouse: {path: out/dev.duckdb}
  prod:
    destinations:
      warehouse: {path: out/prod.duckdb}
"""


def people(tmp_path: Path, name: str, lines: list[str]) -> None:
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / name).write_text("id,name\n" + "\n".join(lines) + "\n")


def one(db: Path, sql: str) -> object:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()[0][0]


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("CONDUIT_TARGET", raising=False)
    (tmp_path / "out").mkdir()
    path = tmp_path / "ingest.yml"
    path.write_text(DUCKDB_CONFIG)
    return path


def test_dev_and_prod_duckdb_targets_keep_their_own_data_state_and_dead_letters(cfg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tmp = cfg.parent
    people(tmp, "people1.csv", ["1,Ann", "2,Bob", "x,Bad", "3,Cy"])
    code, out = invoke("run", str(cfg), "--no-progress")  # default_target: dev
    assert code == 0, out
    assert one(tmp / "out" / "dev.duckdb", "SELECT count(*) FROM people") == 3
    assert not (tmp / "out" / "prod.duckdb").exists() and not (tmp / "out" / "base.duckdb").exists()
    assert sorted(p.name for p in (tmp / ".conduit").iterdir()) == ["dev.dlq", "dev.duckdb"]
    (dlq,) = (tmp / ".conduit" / "dev.dlq").glob("*/people.parquet")
    assert pq.read_table(dlq).column("id").to_pylist() == ["x"]

    people(tmp, "people2.csv", ["4,Di", "5,Ed"])
    code, out = invoke("run", str(cfg), "--target", "dev", "--no-progress")
    assert code == 0, out
    assert one(tmp / "out" / "dev.duckdb", "SELECT count(*) FROM people") == 5  # incremental: only 4 and 5 were new

    monkeypatch.setenv("CONDUIT_TARGET", "prod")
    code, out = invoke("run", str(cfg), "--no-progress")
    assert code == 0, out
    assert one(tmp / "out" / "prod.duckdb", "SELECT count(*) FROM people") == 5  # prod's first run: everything, its own mark
    assert one(tmp / "out" / "dev.duckdb", "SELECT count(*) FROM people") == 5

    dev_store, prod_store = tmp / ".conduit" / "dev.duckdb", tmp / ".conduit" / "prod.duckdb"
    assert (one(dev_store, "SELECT count(*) FROM runs"), one(prod_store, "SELECT count(*) FROM runs")) == (2, 1)
    assert one(dev_store, "SELECT string_agg(rows_written::varchar, ',' ORDER BY started_at) FROM resource_runs") == "3,2"
    assert one(prod_store, "SELECT value FROM state WHERE resource = 'people'") == "5"
    assert len(list((tmp / ".conduit" / "prod.dlq").glob("*/people.parquet"))) == 1  # prod saw the bad row too, in its own dead letters

    code, out = invoke("query", "SELECT count(*) AS n FROM runs", "--config", str(cfg), "--target", "dev", "--format", "csv")
    assert (code, out) == (0, "n\r\n2\r\n")
    code, out = invoke("query", "SELECT count(*) AS n FROM dlq", "--config", str(cfg), "--format", "csv")  # CONDUIT_TARGET=prod
    assert (code, out) == (0, "n\r\n1\r\n")


def test_state_reset_and_manifest_take_a_target(cfg: Path) -> None:
    people(cfg.parent, "people1.csv", ["1,Ann"])
    assert invoke("run", str(cfg), "-t", "prod", "--no-progress")[0] == 0
    code, out = invoke("manifest", "--config", str(cfg), "--target", "dev", "--format", "csv")
    assert (code, out) == (2, f"error: no store yet at {cfg.parent / '.conduit' / 'dev.duckdb'}: run `conduit run` first\n")  # dev never ran
    code, out = invoke("manifest", "--config", str(cfg), "--target", "prod", "--format", "csv")
    assert (code, len(out.splitlines())) == (0, 2)
    assert invoke("state", "reset", "people", "--config", str(cfg), "--target", "dev") == (0, "people: no state stored\n")
    assert invoke("state", "reset", "people", "--config", str(cfg), "--target", "prod") == (0, "people: state reset\n")


def test_validate_and_gc_take_a_target_and_an_unknown_target_exits_2(cfg: Path) -> None:
    people(cfg.parent, "people1.csv", ["1,Ann"])
    code, out = invoke("validate", str(cfg), "--target", "prod")
    assert code == 0, out
    assert "target prod" in out
    assert invoke("gc", str(cfg), "--target", "prod", "--dry-run") == (0, "0 leftovers found\n")
    for args in (("validate", str(cfg)), ("run", str(cfg), "--no-progress"), ("plan", str(cfg)), ("query", "select 1", "--config", str(cfg))):
        code, out = invoke(*args, "--target", "prd")
        assert (code, out) == (2, "error: unknown target 'prd' (did you mean 'prod'?); targets: dev, prod\n"), args
    assert not (cfg.parent / ".conduit").exists()


def pg_count(pg_uri: str, table: str) -> int:
    import adbc_driver_postgresql.dbapi as pg

    with pg.connect(pg_uri, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {table}")
        row = cur.fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.postgres
def test_dev_and_prod_postgresql_schemas(tmp_path: Path, pg_uri: str, pg_schema: str, second_schema: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONDUIT_TARGET", raising=False)
    monkeypatch.setenv("WAREHOUSE_URL", pg_uri)
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(
        f"""\
sources:
  - {{name: files, type: csv, path: data/}}
destinations:
  - {{name: warehouse, type: postgresql, connection_string: "${{WAREHOUSE_URL}}"}}
resources:
  - {{name: people, source: files, destination: warehouse, path: "people*.csv", incremental_column: id}}
targets:
  dev:
    destinations: {{warehouse: {{db_schema: {pg_schema}}}}}
  prod:
    destinations: {{warehouse: {{db_schema: {second_schema}}}}}
"""
    )
    people(tmp_path, "people1.csv", ["1,Ann", "2,Bob"])
    code, out = invoke("run", str(cfg), "--target", "dev", "--no-progress")
    assert code == 0, out
    people(tmp_path, "people2.csv", ["3,Cy"])
    result = conduit.run(cfg, target="prod")
    assert result.status == "success"
    assert (pg_count(pg_uri, f'"{pg_schema}".people'), pg_count(pg_uri, f'"{second_schema}".people')) == (2, 3)
    assert conduit.run(cfg, target="dev").resources[0].rows_written == 1  # dev's own mark: only id 3 is new there
    assert (pg_count(pg_uri, f'"{pg_schema}".people'), pg_count(pg_uri, f'"{second_schema}".people')) == (3, 3)
    assert invoke("validate", str(cfg), "--target", "prod")[0] == 0
