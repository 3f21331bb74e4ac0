"""PostgreSQL source fidelity (issue 17.2): every catalog type lands exactly or as its text form.

The source table is :mod:`pg_every_type`; what landed is checked against PostgreSQL's own
``col::text`` of the source (psycopg), and DuckDB/PostgreSQL are read back directly.
"""

from __future__ import annotations

import datetime as dt
import sys
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import psycopg
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import pg_every_type as every

import conduit

pytestmark = pytest.mark.postgres


def _project(tmp_path: Path, pg_uri: str, pg_schema: str, dest: dict[str, Any], **resource: Any) -> Path:
    cfg = tmp_path / "ingest.yml"
    config = {
        "sources": [{"name": "app", "type": "postgresql", "connection_string": pg_uri, "db_schema": pg_schema}],
        "destinations": [{"name": "dest", **dest}],
        "resources": [{"name": "every_type", "source": "app", "destination": "dest"} | resource],
    }
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    return cfg


@pytest.fixture
def source(pg_uri: str, pg_schema: str) -> dict[int, dict[str, str | None]]:
    """The every-type table in ``pg_schema``; its rows' text forms by id."""
    with psycopg.connect(pg_uri, autocommit=True) as conn, conn.cursor() as cur:
        every.create(cur, pg_schema)
        return every.text_forms(cur, f'"{pg_schema}".every_type')


def _dead_letters(result: conduit.RunResult) -> dict[int, str]:
    path = result.resources[0].dlq_path
    assert path is not None
    df = pl.read_parquet(path)
    return dict(zip(map(int, df["id"].to_list()), df["_conduit_error"].to_list(), strict=True))


def test_every_pg_type_into_duckdb_lands_exactly_or_as_text(tmp_path: Path, pg_uri: str, pg_schema: str, source: dict[int, dict[str, str | None]]) -> None:
    result = conduit.run(_project(tmp_path, pg_uri, pg_schema, {"type": "duckdb", "path": str(tmp_path / "wh.duckdb")}))
    assert result.status == "partial_success", result.resources[0].error  # rows 4 and 5 are dead letters
    assert result.resources[0].rows_written == len(every.LANDED)
    with psycopg.connect(pg_uri) as conn:
        typed = {r[0]: r for r in conn.execute(f'SELECT id, mo::numeric, arr1, tarr, d, ts, tstz, dom, u::text, e::text, j::text, jb::text, n, nn FROM "{pg_schema}".every_type WHERE id <= 3 ORDER BY id').fetchall()}
    with duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True) as con:
        cur = con.execute("SELECT * FROM main.every_type ORDER BY id")
        names = [d[0] for d in cur.description]
        got = {r[0]: dict(zip(names, r, strict=True)) for r in cur.fetchall()}
    assert sorted(got) == every.LANDED
    exact = ["id", "mo", "arr1", "tarr", "d", "ts", "tstz", "dom", "u", "e", "j", "jb", "n", "nn"]
    for key in every.LANDED:
        for col, (_, how) in every.COLUMNS.items():
            value = got[key][col]
            if how == "text":
                assert value == source[key][col], (key, col, value)
            else:
                want = typed[key][exact.index(col)]
                if isinstance(value, dt.datetime) and value.tzinfo is not None:
                    value = value.astimezone(dt.UTC)
                assert value == want, (key, col, value, want)
    assert got[1]["mo"] == Decimal("1234.56")  # money: its amount, not the cents (123456)
    assert got[1]["arr2"] == "{{1,2},{3,4}}"  # not flattened


def test_infinity_and_multi_dimensional_values_are_dead_letters_naming_column_and_type(tmp_path: Path, pg_uri: str, pg_schema: str, source: dict[int, dict[str, str | None]]) -> None:
    result = conduit.run(_project(tmp_path, pg_uri, pg_schema, {"type": "duckdb", "path": str(tmp_path / "wh.duckdb")}))
    assert result.status == "partial_success", result.resources[0].error  # rows 4 and 5 are dead letters
    assert result.resources[0].rows_dlq == len(every.DEAD)
    dead = _dead_letters(result)
    assert sorted(dead) == sorted(every.DEAD)
    for key, (col, pg_type) in every.DEAD.items():
        assert f"column {col} ({pg_type})" in dead[key], dead[key]
    assert "infinity" in dead[4]
    with duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True) as con:
        years = con.execute("SELECT min(year(d)), max(year(d)), max(year(ts)) FROM main.every_type").fetchall()
    assert years == [(1, 2024, 2024)]  # no absurd dates


def _pg_types(pg_uri: str, relation: str) -> dict[str, str]:
    with psycopg.connect(pg_uri) as conn:
        rows = conn.execute("SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped", [relation]).fetchall()
    return dict(rows)


@pytest.mark.parametrize("write_mode", ["replace", "merge"])
def test_pg_to_pg_keeps_every_source_type_and_value(tmp_path: Path, pg_uri: str, pg_schema: str, source: dict[int, dict[str, str | None]], write_mode: str) -> None:
    extra: dict[str, Any] = {"primary_keys": ["id"]} if write_mode == "merge" else {}
    cfg = _project(tmp_path, pg_uri, pg_schema, {"type": "postgresql", "connection_string": pg_uri, "db_schema": pg_schema}, name="copied", query=f'SELECT * FROM "{pg_schema}".every_type', write_mode=write_mode, **extra)
    result = conduit.run(cfg)
    assert result.status == "partial_success", result.resources[0].error  # rows 4 and 5 are dead letters
    want = _pg_types(pg_uri, f'"{pg_schema}".every_type')
    want["arr2"] = "integer[]"  # format_type spells integer[][] as integer[]
    assert _pg_types(pg_uri, f'"{pg_schema}".copied') == want
    with psycopg.connect(pg_uri) as conn, conn.cursor() as cur:
        got = every.text_forms(cur, f'"{pg_schema}".copied')
    assert _differences(got, source) == []


def _differences(got: dict[int, dict[str, str | None]], source: dict[int, dict[str, str | None]]) -> list[tuple[int, str, str | None, str | None]]:
    """(id, column, landed, source) where the text forms differ; missing or extra rows too."""
    assert sorted(got) == every.LANDED
    return [(k, c, got[k][c], source[k][c]) for k in every.LANDED for c in every.COLUMNS if got[k][c] != source[k][c]]


def test_pg_to_pg_append_into_the_table_it_created(tmp_path: Path, pg_uri: str, pg_schema: str, source: dict[int, dict[str, str | None]]) -> None:
    """The second run diffs the source against the table the first created: domains, intervals, multi-dimensional arrays, enums, arrays, money fit."""
    cfg = _project(tmp_path, pg_uri, pg_schema, {"type": "postgresql", "connection_string": pg_uri, "db_schema": pg_schema}, name="twice", query=f'SELECT * FROM "{pg_schema}".every_type', write_mode="append")
    for _ in range(2):
        result = conduit.run(cfg)
        assert result.status == "partial_success", result.resources[0].error
    with psycopg.connect(pg_uri) as conn:
        rows = conn.execute(f'SELECT {", ".join(every.TEXT_FORM.get(c, f"{c}::text") for c in every.COLUMNS)} FROM "{pg_schema}".twice ORDER BY id').fetchall()
    assert [int(r[0]) for r in rows] == [k for k in every.LANDED for _ in range(2)]
    for half in (rows[::2], rows[1::2]):
        assert _differences({int(r[0]): dict(zip(every.COLUMNS, r, strict=True)) for r in half}, source) == []


@pytest.fixture
def other_database(pg_uri: str) -> Iterator[str]:
    """A fresh database on the same server (none of the source's enums, composites or domains), dropped afterwards."""
    name = f"conduit_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield pg_uri.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_pg_to_pg_a_type_the_target_database_lacks_lands_as_its_arrow_type(tmp_path: Path, pg_uri: str, pg_schema: str, source: dict[int, dict[str, str | None]], other_database: str) -> None:
    cfg = _project(tmp_path, pg_uri, pg_schema, {"type": "postgresql", "connection_string": other_database, "db_schema": "public"}, name="elsewhere", query=f'SELECT * FROM "{pg_schema}".every_type', write_mode="replace")
    result = conduit.run(cfg)
    assert result.status == "partial_success", result.resources[0].error
    types = _pg_types(other_database, "public.elsewhere")
    assert (types["e"], types["comp"], types["dom"]) == ("text", "text", "integer")  # enum, composite, domain of the source only
    assert (types["u"], types["jb"], types["j"], types["tarr"], types["mo"]) == ("uuid", "jsonb", "json", "text[]", "money")
    with psycopg.connect(other_database) as conn, conn.cursor() as cur:
        got = every.text_forms(cur, "public.elsewhere")
    assert _differences(got, source) == []


@pytest.mark.parametrize("end", [";\n", " -- ranges and dates"])
def test_a_query_ending_in_a_semicolon_or_a_comment_is_described_and_wrapped(tmp_path: Path, pg_uri: str, pg_schema: str, source: dict[int, dict[str, str | None]], end: str) -> None:
    query = f'SELECT id, r, d FROM "{pg_schema}".every_type WHERE id <= 3 ORDER BY id{end}'
    result = conduit.run(_project(tmp_path, pg_uri, pg_schema, {"type": "duckdb", "path": str(tmp_path / "wh.duckdb")}, query=query))
    assert result.status == "success", result.resources[0].error
    with duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True) as con:
        assert con.execute("SELECT id, r FROM main.every_type ORDER BY id").fetchall() == [(k, source[k]["r"]) for k in every.LANDED]


def test_a_type_that_cannot_be_cast_by_name_fails_naming_column_and_type(tmp_path: Path, pg_uri: str, pg_schema: str, source: dict[int, dict[str, str | None]]) -> None:
    """Two result columns of one name cannot be cast one by one: an inet among them fails the resource, never lands as bytes."""
    query = f'SELECT e.id, e.addr, o.id FROM "{pg_schema}".every_type e JOIN "{pg_schema}".every_type o USING (id)'
    result = conduit.run(_project(tmp_path, pg_uri, pg_schema, {"type": "duckdb", "path": str(tmp_path / "wh.duckdb")}, query=query))
    assert result.status == "failed"
    assert "column addr (inet)" in (result.resources[0].error or ""), result.resources[0].error
