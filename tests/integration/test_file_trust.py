"""Files keep their data as written (issue 17, item 3): leading zeros, header names,
half floats, non-object NDJSON lines, NUL bytes, gzip under a plain name, runaway lines.

Each test loads through ``conduit.run`` into a real DuckDB file or PostgreSQL and reads
the result back directly (duckdb, psycopg, the dead-letter Parquet)."""

from __future__ import annotations

import gzip
from decimal import Decimal
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import conduit
from conduit.connectors.files import limits


def _project(tmp: Path, kind: str, name: str, data: bytes, dest: str = "{name: out, type: duckdb, path: w.duckdb}") -> Path:
    (tmp / name).write_bytes(data)
    cfg = tmp / "ingest.yml"
    cfg.write_text(f"sources: [{{name: s, type: {kind}, path: .}}]\ndestinations: [{dest}]\nresources: [{{name: t, source: s, destination: out, path: {name}, write_mode: append}}]\n")
    return cfg


def _pg(pg_uri: str, pg_schema: str) -> str:
    return f"{{name: out, type: postgresql, connection_string: '{pg_uri}', db_schema: {pg_schema}}}"


def _duck(tmp: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(tmp / "w.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


def _columns(tmp: Path) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in _duck(tmp, "DESCRIBE main.t")]


def _pg_columns(pg_uri: str, schema: str) -> list[tuple[str, str]]:
    with psycopg.connect(pg_uri) as con:
        rows = con.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = %s AND table_name = 't' ORDER BY ordinal_position", (schema,)).fetchall()
    return [(r[0], r[1]) for r in rows]


def _dead_letters(result: conduit.RunResult) -> pl.DataFrame:
    path = result.resources[0].dlq_path
    assert path is not None
    return pl.read_parquet(path)


def test_leading_zeros_stay_text(tmp_path: Path) -> None:
    cfg = _project(tmp_path, "csv", "zips.csv", b"zip,n,price\n08123,1,0.50\n10001,2,1.25\n")
    assert conduit.run(str(cfg)).status == "success"
    assert _columns(tmp_path)[0] == ("zip", "VARCHAR")
    assert _duck(tmp_path, "SELECT zip, n FROM main.t ORDER BY n") == [("08123", 1), ("10001", 2)]


def test_quoted_header_is_unescaped(tmp_path: Path) -> None:
    cfg = _project(tmp_path, "csv", "q.csv", b'"a""b","c,d"\n1,2\n')
    assert conduit.run(str(cfg)).status == "success"
    assert [c for c, _ in _columns(tmp_path)] == ['a"b', "c,d"]


@pytest.mark.postgres
def test_case_duplicate_headers_load_on_every_run(tmp_path: Path, pg_uri: str, pg_schema: str) -> None:
    for dest, columns in ((None, lambda: [c for c, _ in _columns(tmp_path)]), (_pg(pg_uri, pg_schema), lambda: [c for c, _ in _pg_columns(pg_uri, pg_schema)])):
        cfg = _project(tmp_path, "csv", "d.csv", b"id,ID,Id_2\n1,2,3\n", *([dest] if dest else []))
        for _ in range(2):  # append twice: the second run must find the same columns
            result = conduit.run(str(cfg))
            assert result.status == "success", result.resources[0].error
        assert columns() == ["id", "ID_2", "Id_2_2"]
    with psycopg.connect(pg_uri) as con:
        assert con.execute(f'SELECT id, "ID_2", "Id_2_2" FROM "{pg_schema}".t').fetchall() == [(1, 2, 3), (1, 2, 3)]
    assert _duck(tmp_path, 'SELECT id, "ID_2", "Id_2_2" FROM main.t') == [(1, 2, 3), (1, 2, 3)]


@pytest.mark.postgres
def test_empty_header_is_named_by_position_everywhere(tmp_path: Path, pg_uri: str, pg_schema: str) -> None:
    cfg = _project(tmp_path, "csv", "e.csv", b"a,,c\n1,2,3\n")
    assert conduit.run(str(cfg)).status == "success"
    assert [c for c, _ in _columns(tmp_path)] == ["a", "column_2", "c"]
    cfg = _project(tmp_path, "csv", "e.csv", b"a,,c\n1,2,3\n", _pg(pg_uri, pg_schema))
    assert conduit.run(str(cfg)).status == "success"
    assert [c for c, _ in _pg_columns(pg_uri, pg_schema)] == ["a", "column_2", "c"]


def test_renamed_headers_of_a_file_read_in_typed_blocks(tmp_path: Path) -> None:
    """A file alone (not grouped with small ones) whose header names are cleaned: its typed blocks carry the cleaned names too."""
    rows = "".join(f"{i},{i * 2},{i}.50\n" for i in range(1, 20_001))
    cfg = _project(tmp_path, "csv", "h.csv", ("id,ID,\n" + rows).encode())
    assert (tmp_path / "h.csv").stat().st_size > 128 << 10
    result = conduit.run(str(cfg))
    assert result.status == "success", result.resources[0].error
    assert _columns(tmp_path) == [("id", "BIGINT"), ("ID_2", "BIGINT"), ("column_3", "DECIMAL(18,2)")]
    assert _duck(tmp_path, 'SELECT count(*), sum(id), sum("ID_2"), sum(column_3) FROM main.t') == [(20_000, 200_010_000, 400_020_000, Decimal("200020000.00"))]


def test_parquet_float16_loads_as_float32(tmp_path: Path) -> None:
    pq.write_table(pa.table({"x": pa.array(np.array([1.5, -2.25, np.nan], dtype=np.float16)), "id": [1, 2, 3]}), tmp_path / "h.parquet")
    cfg = _project(tmp_path, "parquet", "h.parquet", (tmp_path / "h.parquet").read_bytes())
    result = conduit.run(str(cfg))
    assert result.status == "success", result.resources[0].error
    assert _columns(tmp_path)[0] == ("x", "FLOAT")
    assert _duck(tmp_path, "SELECT x FROM main.t WHERE NOT isnan(x) ORDER BY id") == [(1.5,), (-2.25,)]


def test_ndjson_without_any_object_fails_clearly(tmp_path: Path) -> None:
    cfg = _project(tmp_path, "ndjson", "n.ndjson", b"1\n[2]\n")
    result = conduit.run(str(cfg))
    assert result.status == "failed"
    error = result.resources[0].error or ""
    assert "is a JSON object" in error and "n.ndjson" in error
    assert "at least one column" not in error


def test_ndjson_non_object_line_is_dead_lettered(tmp_path: Path) -> None:
    cfg = _project(tmp_path, "ndjson", "n.ndjson", b'{"a": 1}\n[1, 2]\n7\n{"a": 3}\n')
    result = conduit.run(str(cfg))
    assert result.status == "partial_success"
    assert _duck(tmp_path, "SELECT a FROM main.t ORDER BY a") == [(1,), (3,)]
    dlq = _dead_letters(result)
    assert dlq["_conduit_error"].to_list() == ["line 2: not a JSON object", "line 3: not a JSON object"]


def test_gzip_named_csv_is_refused_by_name(tmp_path: Path) -> None:
    cfg = _project(tmp_path, "csv", "z.csv", gzip.compress(b"a,b\n1,2\n"))
    result = conduit.run(str(cfg))
    assert result.status == "failed"
    assert result.resources[0].error == f"file {tmp_path / 'z.csv'} is gzip-compressed; name it z.csv.gz"
    (tmp_path / "z.csv").rename(tmp_path / "z.csv.gz")
    cfg.write_text(cfg.read_text().replace("path: z.csv,", "path: z.csv.gz,"))
    assert conduit.run(str(cfg)).status == "success"
    assert _duck(tmp_path, "SELECT a, b FROM main.t") == [(1, 2)]


@pytest.mark.parametrize("kind", ["csv", "ndjson"])
def test_overlong_line_is_refused_with_file_and_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    monkeypatch.setattr(limits, "MAX_LINE_BYTES", 64 << 10)
    from conduit.connectors.files import blocks

    monkeypatch.setattr(blocks, "BLOCK", 16 << 10)
    long = "x" * (200 << 10)
    data = f"a,b\n1,2\n3,{long}\n" if kind == "csv" else f'{{"a": "1"}}\n{{"a": "2"}}\n{{"a": "{long}"}}\n'
    name = f"long.{kind}"
    cfg = _project(tmp_path, kind, name, data.encode())
    result = conduit.run(str(cfg))
    assert result.status == "failed"
    error = result.resources[0].error or ""
    assert f"{tmp_path / name}: the record at line 3 is longer than 65,536 bytes" in error


@pytest.mark.postgres
@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_nul_byte_bound_for_postgres_dead_letters_the_row(tmp_path: Path, pg_uri: str, pg_schema: str, kind: str) -> None:
    rows = {"id": [1, 2, 3], "note": ["a", "b\x00c", "d"], "tag": ["x", "y", "z\x00"]}
    if kind == "csv":
        data = b"id,note,tag\n1,a,x\n2,b\x00c,y\n3,d,z\x00\n"
    else:
        pq.write_table(pa.table(rows), tmp_path / "p.parquet")
        data = (tmp_path / "p.parquet").read_bytes()
    cfg = _project(tmp_path, kind, f"nul.{kind}", data, _pg(pg_uri, pg_schema))
    result = conduit.run(str(cfg))
    assert result.status == "partial_success", result.resources[0].error
    with psycopg.connect(pg_uri) as con:
        assert con.execute(f'SELECT id, note, tag FROM "{pg_schema}".t ORDER BY id').fetchall() == [(1, "a", "x")]
    dlq = _dead_letters(result).sort("_conduit_row_number")
    assert dlq["_conduit_row_number"].to_list() == [2, 3]
    assert dlq["_conduit_check"].to_list() == ["nul", "nul"]
    assert dlq["_conduit_error"].to_list() == ["NUL byte in column note (destination out cannot store it in text)", "NUL byte in column tag (destination out cannot store it in text)"]
    assert dlq["note"].to_list() == ["b\x00c", "d"]


@pytest.mark.postgres
def test_parquet_map_with_non_string_keys_loads_into_postgres(tmp_path: Path, pg_uri: str, pg_schema: str) -> None:
    table = pa.table(
        {
            "id": [1, 2],
            "m": pa.array([[(1, "a"), (20, "b")], None], pa.map_(pa.int64(), pa.string())),
            "nested": pa.array([[[(True, 1.5)]], [[]]], pa.list_(pa.map_(pa.bool_(), pa.float64()))),
            "s": pa.array([[("k", 1)], []], pa.map_(pa.string(), pa.int64())),
        },
    )
    pq.write_table(table, tmp_path / "m.parquet")
    cfg = _project(tmp_path, "parquet", "m.parquet", (tmp_path / "m.parquet").read_bytes(), _pg(pg_uri, pg_schema))
    result = conduit.run(str(cfg))
    assert result.status == "success", result.resources[0].error
    with psycopg.connect(pg_uri) as con:
        assert con.execute(f'SELECT id, m, nested, s FROM "{pg_schema}".t ORDER BY id').fetchall() == [(1, {"1": "a", "20": "b"}, [{"true": 1.5}], {"k": 1}), (2, None, [{}], {})]
    assert dict(_pg_columns(pg_uri, pg_schema))["m"] == "jsonb"


@pytest.mark.postgres
@pytest.mark.parametrize("rows_in_file", [2000, 8000], ids=["grouped-small-file", "file-alone"])
def test_typed_csv_blocks_into_postgres_keep_every_value_and_dead_letter_the_bad_rows(tmp_path: Path, pg_uri: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch, rows_in_file: int) -> None:
    """Many small blocks (Arrow types most of them; a small file is read with others): quoted fields, CRLF and bad values deep inside; checked against Python's csv, Decimal and date."""
    import csv
    import datetime as dt
    import io
    import random
    from decimal import Decimal

    from conduit.connectors.files import blocks

    monkeypatch.setattr(blocks, "BLOCK", 4096)
    typed_blocks = []
    parse = blocks._ArrowCsv.parse
    monkeypatch.setattr(blocks._ArrowCsv, "parse", lambda self, block: typed_blocks.append(t) or t if isinstance(t := parse(self, block), pa.Table) else t)
    rng = random.Random(11)
    notes = ["plain", 'say "hi"', "a,b", "two\r\nlines", "ünïcode €", ""]
    day = [(dt.date(1990, 1, 1) + dt.timedelta(days=rng.randint(0, 12000))).isoformat() for _ in range(rows_in_file)]
    rows = [[str(i), f"{rng.randint(-99999, 99999) / 100:.2f}", rng.choice(notes), day[i - 1]] for i in range(1, rows_in_file + 1)]  # an empty last field would send the file down the tolerant path
    bad = {500: (1, "1.234"), 900: (3, "2024-02-30"), 1300: (0, "0x1F"), 1700: (2, "nul\x00here")}
    for row, (col, value) in bad.items():
        rows[row - 1][col] = value
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows([["id", "amount", "note", "day"], *rows])
    dest = _pg(pg_uri, pg_schema)
    (tmp_path / "big.csv").write_text(out.getvalue(), newline="")
    (tmp_path / "ingest.yml").write_text(
        f"sources: [{{name: s, type: csv, path: .}}]\ndestinations: [{dest}]\nresources: [{{name: t, source: s, destination: out, path: big.csv, columns: {{id: bigint, amount: 'decimal(12,2)', day: date}}}}]\n"
    )
    result = conduit.run(str(tmp_path / "ingest.yml"))
    assert result.status == "partial_success", result.resources[0].error
    want = [(int(i), Decimal(a), dt.date.fromisoformat(d), n) for n_row, (i, a, n, d) in enumerate(rows, start=1) if n_row not in bad]
    with psycopg.connect(pg_uri) as con:
        got = con.execute(f'SELECT id, amount, day, note FROM "{pg_schema}".t ORDER BY id').fetchall()
    assert got == want
    dlq = _dead_letters(result).sort("_conduit_row_number")
    assert dlq["_conduit_row_number"].to_list() == sorted(bad)
    reasons = dlq["_conduit_error"].to_list()
    assert reasons[:3] == ["column amount: '1.234' is not decimal(12,2)", "column day: '2024-02-30' is not date", "column id: '0x1F' is not bigint"]
    assert reasons[3].startswith("NUL byte in column note")
    assert len(typed_blocks) > (20 if rows_in_file > 2000 else -1)  # a file alone: most blocks typed by Arrow
