"""``conduit schema infer`` / ``schema compare`` through the CLI, against real DuckDB and PostgreSQL tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import adbc_driver_postgresql.dbapi as pg
import duckdb
import pytest
import yaml
from cli_run import invoke


def write(tmp_path: Path, destination: dict[str, Any], **resource: Any) -> Path:
    (tmp_path / "data").mkdir(exist_ok=True)
    cfg = tmp_path / "ingest.yml"
    res = {"name": "people", "source": "files", "destination": destination["name"], "path": "people.csv", **resource}
    cfg.write_text(yaml.safe_dump({"sources": [{"name": "files", "type": "csv", "path": "data"}], "destinations": [destination], "resources": [res]}, sort_keys=False))
    return cfg


def duck(tmp_path: Path) -> dict[str, Any]:
    return {"name": "local", "type": "duckdb", "path": "w.duckdb"}


def duck_sql(tmp_path: Path, text: str) -> None:
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        con.execute(text)


def test_compare_reports_a_new_column_in_manual_mode_and_exits_1(tmp_path: Path) -> None:
    cfg = write(tmp_path, duck(tmp_path), columns={"id": "bigint"})
    duck_sql(tmp_path, "CREATE TABLE main.people (id BIGINT, name VARCHAR)")
    (tmp_path / "data" / "people.csv").write_text("id,name,email\n1,a,a@x\n")
    code, out = invoke("schema", "compare", "people", "-c", str(cfg))
    assert code == 1, out
    assert out.splitlines() == ["+ email text"]


def test_compare_reports_missing_columns_and_type_changes(tmp_path: Path) -> None:
    cfg = write(tmp_path, duck(tmp_path), columns={"id": "bigint", "name": "integer"}, schema_evolution="warn")
    duck_sql(tmp_path, "CREATE TABLE main.people (id INTEGER, name VARCHAR, born DATE)")
    (tmp_path / "data" / "people.csv").write_text("id,name\n1,2\n")
    code, out = invoke("schema", "compare", "people", "-c", str(cfg))
    assert code == 1, out
    assert sorted(out.splitlines()) == ["- born date (not in source; loaded as NULL)", "~ id integer -> bigint", "~ name text -> integer"]


def test_compare_ignores_conduits_own_columns_and_exits_0_when_equal(tmp_path: Path) -> None:
    cfg = write(tmp_path, duck(tmp_path), write_mode="merge", primary_keys=["id"], columns={"id": "bigint"})
    (tmp_path / "data" / "people.csv").write_text("id,name\n1,a\n")
    code, out = invoke("run", str(cfg), "--no-progress")
    assert code == 0, out
    code, out = invoke("schema", "compare", "people", "-c", str(cfg))
    assert (code, out.strip()) == (0, "people: no differences")


def test_compare_a_table_that_does_not_exist_yet(tmp_path: Path) -> None:
    cfg = write(tmp_path, duck(tmp_path))
    (tmp_path / "data" / "people.csv").write_text("id,name\n1,a\n")
    code, out = invoke("schema", "compare", "people", "-c", str(cfg))
    assert (code, out.strip()) == (1, "main.people does not exist yet; it will be created")


def test_compare_json_lists_each_change(tmp_path: Path) -> None:
    cfg = write(tmp_path, duck(tmp_path), columns={"id": "bigint"})
    duck_sql(tmp_path, "CREATE TABLE main.people (id BIGINT, name VARCHAR)")
    (tmp_path / "data" / "people.csv").write_text("id,name,email\n1,a,a@x\n")
    code, out = invoke("schema", "compare", "people", "-c", str(cfg), "--format", "json")
    assert code == 1, out
    assert json.loads(out) == {"table": "main.people", "exists": True, "changes": [{"change": "add_column", "column": "email", "source_type": "text", "target_type": None, "ddl": 'ALTER TABLE "main"."people" ADD COLUMN "email" VARCHAR;'}]}


def test_infer_prints_duckdb_type_names_without_conduit_columns(tmp_path: Path) -> None:
    cfg = write(tmp_path, duck(tmp_path), write_mode="merge", primary_keys=["id"], columns={"amount": "decimal(15,2)", "at": "timestamptz"})
    (tmp_path / "data" / "people.csv").write_text("id,name,amount,at\n1,a,1.50,2024-01-02T03:04:05Z\n")
    code, out = invoke("schema", "infer", "people", "-c", str(cfg))
    assert code == 0, out
    assert out.splitlines() == ["id: BIGINT", "name: VARCHAR", "amount: DECIMAL(15,2)", "at: TIMESTAMP WITH TIME ZONE"]


def test_infer_json(tmp_path: Path) -> None:
    cfg = write(tmp_path, duck(tmp_path), columns={"amount": "decimal(15,2)"})
    (tmp_path / "data" / "people.csv").write_text("id,amount\n1,1.50\n")
    code, out = invoke("schema", "infer", "people", "-c", str(cfg), "--format", "json")
    assert code == 0, out
    assert json.loads(out) == [{"column": "id", "type": "BIGINT"}, {"column": "amount", "type": "DECIMAL(15,2)"}]


@pytest.mark.postgres
def test_infer_prints_postgresql_type_names(tmp_path: Path, pg_uri: str, pg_schema: str) -> None:
    dest = {"name": "pg", "type": "postgresql", "connection_string": pg_uri, "db_schema": pg_schema}
    cfg = write(tmp_path, dest, columns={"amount": "decimal(15,2)", "at": "timestamptz", "doc": "json"})
    (tmp_path / "data" / "people.csv").write_text('id,name,amount,at,doc\n1,a,1.50,2024-01-02T03:04:05Z,"{""a"": 1}"\n')
    code, out = invoke("schema", "infer", "people", "-c", str(cfg))
    assert code == 0, out
    assert out.splitlines() == ["id: bigint", "name: text", "amount: numeric(15,2)", "at: timestamptz", "doc: jsonb"]


@pytest.mark.postgres
def test_compare_against_a_postgresql_table(tmp_path: Path, pg_uri: str, pg_schema: str) -> None:
    dest = {"name": "pg", "type": "postgresql", "connection_string": pg_uri, "db_schema": pg_schema}
    cfg = write(tmp_path, dest, write_mode="merge", primary_keys=["id"], columns={"amount": "decimal(15,2)"})
    with pg.connect(pg_uri, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f'CREATE TABLE "{pg_schema}".people (id bigint PRIMARY KEY, amount numeric(10,2), "_conduit_seq" bigint)')
    (tmp_path / "data" / "people.csv").write_text("id,amount,note\n1,1.50,x\n")
    code, out = invoke("schema", "compare", "people", "-c", str(cfg))
    assert code == 1, out
    assert sorted(out.splitlines()) == ["+ note text", "~ amount decimal(10,2) -> decimal(15,2)"]


def test_compare_and_infer_take_a_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONDUIT_TARGET", raising=False)
    cfg = write(tmp_path, duck(tmp_path), columns={"id": "bigint"})
    text = yaml.safe_load(cfg.read_text())
    text["targets"] = {"prod": {"destinations": {"local": {"path": "prod.duckdb"}}}}
    cfg.write_text(yaml.safe_dump(text, sort_keys=False))
    with duckdb.connect(str(tmp_path / "prod.duckdb")) as con:
        con.execute("CREATE TABLE main.people (id BIGINT, name VARCHAR)")
    (tmp_path / "data" / "people.csv").write_text("id,name\n1,a\n")
    assert invoke("schema", "compare", "people", "-c", str(cfg))[0] == 1  # w.duckdb has no table yet
    assert invoke("schema", "compare", "people", "-c", str(cfg), "--target", "prod") == (0, "people: no differences\n")
    assert invoke("schema", "infer", "people", "-c", str(cfg), "-t", "prod") == (0, "id: BIGINT\nname: VARCHAR\n")


def test_a_glob_is_not_a_resource_here(tmp_path: Path) -> None:
    cfg = write(tmp_path, duck(tmp_path))
    code, out = invoke("schema", "compare", "peo*", "-c", str(cfg))
    assert code == 2 and "name one resource" in out, out
