"""Schema evolution against an existing DuckDB table: manual, auto, warn (SPEC section 5)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

import conduit

CONFIG = """\
sources: [{{name: files, type: csv, path: data/}}]
destinations: [{{name: local, type: duckdb, path: w.duckdb}}]
resources: [{{name: people, source: files, destination: local, path: people.csv, schema_evolution: {mode}, columns: {{id: {id_type}}}}}]
"""


def setup(tmp_path: Path, mode: str) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "people.csv").write_text("id,name\n1,a\n")
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(CONFIG.format(mode=mode, id_type="integer"))
    assert conduit.run(cfg).status == "success"
    (tmp_path / "data" / "people.csv").write_text("id,name,email\n2,b,b@x\n")
    cfg.write_text(CONFIG.format(mode=mode, id_type="bigint"))
    return cfg


def columns(db: Path) -> dict[str, str]:
    with duckdb.connect(str(db), read_only=True) as con:
        return dict(con.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'people'").fetchall())


def test_manual_fails_with_diff_and_ddl(tmp_path: Path) -> None:
    result = conduit.run(setup(tmp_path, "manual"))
    res = result.resources[0]
    assert res.status == "failed"
    assert "+ email text" in (res.error or "") and "~ id integer -> bigint" in (res.error or "")
    assert 'ALTER TABLE "main"."people" ADD COLUMN "email" VARCHAR;' in (res.error or "")
    assert columns(tmp_path / "w.duckdb") == {"id": "INTEGER", "name": "VARCHAR"}


def test_auto_adds_and_widens_and_records_a_version(tmp_path: Path) -> None:
    result = conduit.run(setup(tmp_path, "auto"))
    assert result.status == "success", result.resources[0].error
    assert columns(tmp_path / "w.duckdb") == {"id": "BIGINT", "name": "VARCHAR", "email": "VARCHAR"}
    with duckdb.connect(str(tmp_path / ".conduit" / "conduit.duckdb"), read_only=True) as con:
        versions = con.execute("SELECT version, change FROM schema_versions ORDER BY version").fetchall()
    assert [v for v, _ in versions] == [1, 2] and "+ email" in versions[1][1]


def test_warn_loads_matching_columns(tmp_path: Path) -> None:
    cfg = setup(tmp_path, "warn")
    cfg.write_text(CONFIG.format(mode="warn", id_type="integer"))
    result = conduit.run(cfg)
    assert result.status == "success", result.resources[0].error
    assert columns(tmp_path / "w.duckdb") == {"id": "INTEGER", "name": "VARCHAR"}
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        assert con.execute("SELECT id, name FROM main.people ORDER BY id").fetchall() == [(1, "a"), (2, "b")]


def test_auto_change_is_not_applied_when_the_load_fails(tmp_path: Path) -> None:
    cfg = setup(tmp_path, "auto")
    text = cfg.read_text().replace("path: people.csv", "path: people.csv, max_dlq_rows: 0")
    (tmp_path / "data" / "people.csv").write_text("id,name,email\n2,b,b@x\nnot-a-number,c,c@x\n")
    cfg.write_text(text)
    assert conduit.run(cfg).status == "failed"
    assert columns(tmp_path / "w.duckdb") == {"id": "INTEGER", "name": "VARCHAR"}


@pytest.mark.parametrize("mode", ["manual", "auto"])
def test_lossy_change_fails(tmp_path: Path, mode: str) -> None:
    cfg = setup(tmp_path, mode)
    (tmp_path / "data" / "people.csv").write_text("id,name\nx,b\n")
    cfg.write_text(CONFIG.format(mode=mode, id_type="text"))
    res = conduit.run(cfg).resources[0]
    assert res.status == "failed" and "~ id integer -> text" in (res.error or "")
