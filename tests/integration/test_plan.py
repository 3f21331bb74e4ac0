"""``conduit plan``: per resource the parts, rows estimated, write mode, DDL and incremental window; nothing loaded."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import polars as pl
import pytest
from cli_run import invoke

CONFIG = """\
sources:
  - {name: files, type: csv, path: data/}
  - {name: lake, type: parquet, path: lake/}
destinations:
  - {name: local, type: duckdb, path: out/warehouse.duckdb}
resources:
  - name: people
    source: files
    destination: local
    path: "people*.csv"
    incremental_column: id
    tags: [daily]
  - name: events
    source: lake
    destination: local
    write_mode: merge
    primary_keys: [id]
    incremental_column: id
    incremental_lookback: 2
"""


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("CONDUIT_TARGET", raising=False)
    for d in ("data", "lake", "out"):
        (tmp_path / d).mkdir()
    (tmp_path / "data" / "people1.csv").write_text("id,name\n1,Ann\n2,Bob\n")
    (tmp_path / "data" / "people2.csv").write_text("id,name\n3,Cy\n")
    pl.DataFrame({"id": list(range(10)), "kind": ["a"] * 10}).write_parquet(tmp_path / "lake" / "e.parquet")
    path = tmp_path / "ingest.yml"
    path.write_text(CONFIG)
    return path


def plan(cfg: Path, *args: str) -> dict:
    code, out = invoke("plan", str(cfg), "--format", "json", *args)
    assert code == 0, out
    return json.loads(out)


def test_plan_before_the_first_run(cfg: Path) -> None:
    got = plan(cfg)
    assert got["target"] is None
    people, events = got["resources"]
    files = sorted((cfg.parent / "data").glob("people*.csv"))
    assert people["resource"] == "people"
    assert (people["source"], people["source_type"], people["destination"], people["destination_type"]) == ("files", "csv", "local", "duckdb")
    assert (people["table"], people["write_mode"], people["primary_keys"]) == ("main.people", "append", [])
    assert [(Path(p["name"]).name, p["bytes"]) for p in people["parts"]] == [(f.name, f.stat().st_size) for f in files]
    assert people["rows_estimated"] == 3  # CSV: the files' bytes over the first file's average line (an estimate; exact here)
    (ddl,) = people["ddl"]
    assert ddl.startswith('CREATE TABLE "main"."people" (') and '"id" BIGINT' in ddl and '"name" VARCHAR' in ddl
    assert people["incremental"] == {"column": "id", "mark": None, "operator": ">", "since": None, "lookback": None, "full_refresh": False}
    assert people["error"] is None
    assert events["rows_estimated"] == 10  # Parquet footers
    assert events["write_mode"] == "merge" and events["primary_keys"] == ["id"]
    assert events["incremental"]["operator"] == ">="  # merge re-reads rows at the mark
    with duckdb.connect(str(cfg.parent / "out" / "warehouse.duckdb"), read_only=True) as con:  # nothing was loaded
        assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name IN ('people', 'events')").fetchall() == [(0,)]
    assert not (cfg.parent / ".conduit").exists()  # and no run recorded


def test_plan_after_a_run_shows_the_window_and_no_ddl(cfg: Path) -> None:
    assert invoke("run", str(cfg), "--no-progress")[0] == 0
    people, events = plan(cfg)["resources"]
    assert people["ddl"] == []
    assert people["incremental"] == {"column": "id", "mark": "3", "operator": ">", "since": "3", "lookback": None, "full_refresh": False}
    assert events["incremental"]["mark"] == "9" and events["incremental"]["since"] == "7" and events["incremental"]["lookback"] == "2"
    assert [p["bytes"] for p in events["parts"]] == [(cfg.parent / "lake" / "e.parquet").stat().st_size]  # its file has rows above 7
    refresh = plan(cfg, "--full-refresh")["resources"][0]["incremental"]
    assert (refresh["since"], refresh["full_refresh"]) == (None, True)


def test_plan_shows_schema_changes_and_what_would_fail(cfg: Path) -> None:
    assert invoke("run", str(cfg), "--no-progress")[0] == 0
    (cfg.parent / "data" / "people1.csv").write_text("id,name,email\n1,Ann,ann@x.org\n2,Bob,\n")  # the schema comes from the first file
    code, out = invoke("plan", str(cfg), "-r", "people", "--format", "json")
    assert code == 1, out  # schema_evolution manual: the run would fail the resource
    (people,) = json.loads(out)["resources"]
    assert "schema of main.people differs" in people["error"] and 'ADD COLUMN "email" VARCHAR' in people["error"]
    cfg.write_text(CONFIG.replace("    tags: [daily]\n", "    tags: [daily]\n    schema_evolution: auto\n"))
    (people,) = plan(cfg, "-r", "tag:daily")["resources"]
    assert people["ddl"] == ['ALTER TABLE "main"."people" ADD COLUMN "email" VARCHAR;']
    assert people["error"] is None


def test_plan_table_on_a_terminal_and_selection(cfg: Path) -> None:
    code, out = invoke("plan", str(cfg), "--exclude", "events")
    assert code == 0, out
    assert "people" in out and "events" not in out
    assert "append" in out and "2 files" in out and "id: no mark yet, all rows" in out
    assert 'CREATE TABLE "main"."people"' in out


def test_plan_validates_first(cfg: Path) -> None:
    cfg.write_text(CONFIG.replace("    primary_keys: [id]\n", ""))
    code, out = invoke("plan", str(cfg))
    assert code == 2
    assert out == "error: ingest.yml:16: resources[1].write_mode: write_mode merge needs primary_keys\n"


def test_run_dry_run_shows_the_plan_and_loads_nothing(cfg: Path) -> None:
    code, out = invoke("run", str(cfg), "--dry-run", "-r", "people")
    assert code == 0, out
    assert "people" in out and "dry run: 1 resource planned, nothing loaded" in out
    assert not (cfg.parent / ".conduit").exists()


@pytest.mark.postgres
def test_plan_postgresql_ddl(tmp_path: Path, pg_uri: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAREHOUSE_URL", pg_uri)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "people1.csv").write_text("id,name\n1,Ann\n")
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(
        f"""\
sources: [{{name: files, type: csv, path: data/}}]
destinations: [{{name: wh, type: postgresql, connection_string: "${{WAREHOUSE_URL}}", db_schema: {pg_schema}}}]
resources: [{{name: people, source: files, destination: wh, write_mode: merge, primary_keys: [id], schema_evolution: auto}}]
"""
    )
    (people,) = plan(cfg)["resources"]
    assert people["ddl"] == [f'CREATE TABLE "{pg_schema}"."people" ("id" bigint, "name" text, CONSTRAINT "people_pkey" PRIMARY KEY ("id"))']
    assert invoke("run", str(cfg), "--no-progress")[0] == 0
    (tmp_path / "data" / "people1.csv").write_text("id,name,age\n1,Ann,40\n")
    (people,) = plan(cfg)["resources"]
    assert people["ddl"] == [f'ALTER TABLE "{pg_schema}"."people" ADD COLUMN "age" bigint;']


@pytest.mark.postgres
def test_plan_postgresql_source_shows_its_query_and_estimate(tmp_path: Path, pg_uri: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import adbc_driver_postgresql.dbapi as pg

    with pg.connect(pg_uri, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f'CREATE TABLE "{pg_schema}".src AS SELECT g AS id, g::text AS note FROM generate_series(1, 3) g')
        cur.execute(f'ANALYZE "{pg_schema}".src')
    monkeypatch.setenv("APP_URL", pg_uri)
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(
        f"""\
sources: [{{name: app, type: postgresql, connection_string: "${{APP_URL}}", db_schema: {pg_schema}}}]
destinations: [{{name: local, type: duckdb}}]
resources: [{{name: src, source: app, destination: local, incremental_column: id}}]
"""
    )
    (src,) = plan(cfg)["resources"]
    assert (src["parts"], src["rows_estimated"]) == ([{"name": f'SELECT * FROM "{pg_schema}"."src"', "bytes": None}], 3)
    assert src["ddl"] == ['CREATE TABLE "main"."src" ("id" INTEGER, "note" VARCHAR)']
    assert invoke("run", str(cfg), "--no-progress")[0] == 0
    (src,) = plan(cfg)["resources"]
    assert src["parts"][0]["name"] == f'SELECT * FROM (SELECT * FROM "{pg_schema}"."src") AS _conduit_q WHERE "id" > $1'
    assert (src["incremental"]["since"], src["ddl"]) == ("3", [])
