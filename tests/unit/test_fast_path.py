"""The DuckDB hot path: strict-cast fast path, pipeline row numbering, row-group-aligned batches."""

from __future__ import annotations

import uuid
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pytest

import conduit
from conduit.batches import frames
from conduit.coerce import Coercer, cast_expr
from conduit.connectors.base import ROW_NUMBER, Part
from conduit.connectors.duckdb import ROW_GROUP_ROWS, aligned

TARGETS = {"n": pl.Int64(), "i": pl.Int32(), "x": pl.Decimal(15, 2), "d": pl.Date(), "f": pl.Float64(), "b": pl.Boolean()}


def careful(df: pl.DataFrame) -> tuple[pl.DataFrame, list[bool]]:
    """The reference: every column through cast_expr, bad where a non-null became null."""
    exprs = {n: cast_expr(n, pl.String(), t) for n, t in TARGETS.items()}
    typed = df.with_columns(*[e.alias(n) for n, e in exprs.items()])
    given = [pl.col(n).is_not_null() & (pl.col(n).str.strip_chars() != "") for n in exprs]  # blank is NULL, not bad
    bad = df.select(pl.any_horizontal([g & e.is_null() for g, e in zip(given, exprs.values(), strict=True)])).to_series()
    return typed, bad.to_list()


CLEAN = {"n": ["1", "2"], "i": ["3", "4"], "x": ["1.50", "24710.35"], "d": ["2024-01-02", "1998-12-01"], "f": ["1.5", "2"], "b": ["yes", "f"]}


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({}, id="clean"),
        pytest.param({"n": [" 1", "2 "]}, id="padded-int"),
        pytest.param({"x": ["", "1.5"]}, id="blank-decimal"),
        pytest.param({"x": ["1.234", "1.230"]}, id="decimal-excess-digits"),
        pytest.param({"x": ["1.230", "17.000"]}, id="decimal-trailing-zeros"),
        pytest.param({"x": ["1.5e3", "1.001e5"]}, id="decimal-exponent"),
        pytest.param({"x": ["1.2.345", "-0.001"]}, id="decimal-odd-text"),
        pytest.param({"d": ["2024-13-45", "1998-12-01"]}, id="bad-date"),
        pytest.param({"i": ["3", "99999999999"]}, id="int32-overflow"),
        pytest.param({"n": ["abc", None], "f": ["x", "1e3"]}, id="bad-and-null"),
    ],
)
def test_fast_casts_equal_careful_casts(change: dict[str, list[str | None]]) -> None:
    df = pl.DataFrame({**CLEAN, **change}, schema=dict.fromkeys(TARGETS, pl.String))
    typed, bad = Coercer(dict(TARGETS)).apply(df)
    want, want_bad = careful(df)
    assert bad.to_list() == want_bad
    assert typed.equals(want)


def test_lazy_part_without_row_number_is_numbered_in_order_and_skips() -> None:
    lf = pl.LazyFrame({"v": list(range(10))})
    got = pl.concat(list(frames(Part("p", lf), batch_size=3, skip=4)))
    assert got.get_column(ROW_NUMBER).to_list() == list(range(5, 11))
    assert got.get_column("v").to_list() == list(range(4, 10))


def test_aligned_keeps_rows_and_order() -> None:
    sizes = [5, 7, 2, 9, 4, 1]
    start, batches = 0, []
    for n in sizes:
        batches.append(pa.record_batch({"x": list(range(start, start + n))}))
        start += n
    out = list(aligned(iter(batches), size=4))
    assert [b.num_rows % 4 for b in out[:-1]] == [0] * (len(out) - 1)
    assert pa.Table.from_batches(out).column("x").to_pylist() == list(range(start))


def test_duckdb_load_of_unaligned_batches_has_only_full_row_groups(tmp_path: Path) -> None:
    """Batches of 250,000 rows reach DuckDB as whole row groups: no partial group left to rewrite.

    The declared bigint casts the file's int32 ids, so the batches pass through Arrow (DuckDB does not read the file itself).
    """
    rows = 1_000_000
    pl.DataFrame({"id": pl.Series(range(rows), dtype=pl.Int32), "s": ["x"] * rows}).write_parquet(tmp_path / "t.parquet")
    name = f"t_{uuid.uuid4().hex[:8]}"
    resource = f"{{name: {name}, source: f, destination: d, path: t.parquet, batch_size: 250000, columns: {{id: bigint}}}}"
    (tmp_path / "ingest.yml").write_text(f"sources: [{{name: f, type: parquet, path: .}}]\ndestinations: [{{name: d, type: duckdb, path: w.duckdb}}]\nresources: [{resource}]\n")
    assert conduit.run(tmp_path / "ingest.yml").status == "success"
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        assert con.execute(f"SELECT count(*), min(id), max(id) FROM {name}").fetchall() == [(rows, 0, rows - 1)]
        groups = con.execute(f"SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('{name}')").fetchall()[0][0]
    assert groups == -(-rows // ROW_GROUP_ROWS)


def test_untransformed_arrow_batches_skip_polars() -> None:
    """An Arrow part needing no cast, check or added column passes as is (strings conformed), skip honoured."""
    from conduit.batches import stream_part
    from conduit.transform import Transform

    source = pa.schema([("a", pa.int64()), ("s", pa.string())])
    target = pa.schema([("a", pa.int64()), ("s", pa.large_string())])
    plain = Transform(Coercer({}), target)
    assert plain.direct(source)
    assert not Transform(Coercer({"a": pl.Int32()}), target).direct(source)
    assert not Transform(Coercer({}), target, add_seq=True).direct(source)
    assert not Transform(Coercer({}), pa.schema([("a", pa.int32()), ("s", pa.large_string())])).direct(source)
    batches = [pa.record_batch({"a": [1, 2, 3], "s": ["x", "y", "z"]}, schema=source), pa.record_batch({"a": [4], "s": ["w"]}, schema=source)]
    steps = list(stream_part(Part("p", pa.RecordBatchReader.from_batches(source, batches)), 0, plain, 10, skip=2))
    assert [s.good.schema for s in steps] == [target, target]
    assert [s.good.column("a").to_pylist() for s in steps] == [[3], [4]]
    assert [(s.rows_read, s.rows_read_end) for s in steps] == [(1, 3), (1, 4)]


def test_runs_allocate_arrow_through_jemalloc_unless_the_environment_says_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    from conduit._runtime import arrow_allocator

    before = pa.default_memory_pool()
    try:
        monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "system")
        pa.set_memory_pool(pa.system_memory_pool())
        arrow_allocator()
        assert pa.default_memory_pool().backend_name == "system"
        monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL")
        arrow_allocator()
        try:
            pa.jemalloc_memory_pool()
        except NotImplementedError:  # a pyarrow without jemalloc keeps its pool
            assert pa.default_memory_pool().backend_name == "system"
        else:
            assert pa.default_memory_pool().backend_name == "jemalloc"
    finally:
        pa.set_memory_pool(before)


ARROW_CSV_CASES = [
    (pl.Int64(), ["1", "+1", "-1", "01", " 1", "1 ", "1.0", "1e3", "0x10", "0X1f", "-0x1", "9223372036854775807", "9223372036854775808", "-9223372036854775809"]),
    (pl.Int32(), ["2147483647", "2147483648", "-2147483648", "-2147483649", "12", "1_000", "\u0661", "--1", "+-1", "-0", "", "NaN"]),
    (pl.Int16(), ["32767", "32768", "-32768", "7"]),
    (pl.UInt32(), ["0", "-1", "4294967295", "4294967296", "+3", "3"]),
    (pl.Float64(), ["1.5", "+1.5", ".5", "5.", "1e5", "1E-5", "inf", "-inf", "Infinity", "NaN", "nan", " 1.5", "0x1p3", "1.5f", "1d", "0.1", "1e400", "4.9e-324", "-0"]),
    (pl.Date(), ["2024-01-02", "2024/01/02", "20240102", "2024-1-2", "2024-01-02 ", " 2024-01-02", "2024-01-02T00:00:00", "02-01-2024", "2024-02-30", "2024-02-29"]),
    (pl.Date(), ["2023-02-29", "+2024-01-02", "99999-01-01", "0001-01-01", "0000-01-01", "-0001-01-01", "9999-12-31", "1970-01-01"]),
    (pl.Decimal(15, 2), ["1.23", "1.234", "1.230", "1.2300000", "1", "-1.5", ".5", "5.", "1e2", "1.5e-1", "1.55e-1", "+1.00", "-0.00", "1.2.3", " 1.5", "1.5 "]),
    (pl.Decimal(15, 2), ["9999999999999.99", "10000000000000.00", "-9999999999999.99", "NaN", "inf", "0x10", "2E13", "020E13", "99999999999999", "1E15"]),
    (pl.Decimal(38, 0), ["99999999999999999999999999999999999999", "100000000000000000000000000000000000000", "1.0", "1.5", "7"]),
]


@pytest.mark.parametrize(("target", "cases"), ARROW_CSV_CASES, ids=lambda v: str(v) if isinstance(v, pl.DataType) else "")
def test_typed_csv_blocks_read_text_as_the_cast_does(target: pl.DataType, cases: list[str]) -> None:
    """Arrow's reader of typed blocks may refuse a value the cast takes (the block is then read as text), but never takes one the cast refuses, nor gives another value."""
    from conduit.connectors.files.blocks import _ArrowCsv
    from conduit.connectors.files.options import CsvOptions

    parser = _ArrowCsv.of(CsvOptions(), ["v", "w"], {"v": target})
    assert parser is not None
    physical = pl.Int32 if target == pl.Date else target  # year 0 has no Python date: compare days
    taken = 0
    for text in cases:
        careful = pl.DataFrame({"v": [text]}).select(cast_expr("v", pl.String(), target).cast(physical).alias("v"), (pl.col("v").str.strip_chars() != "").alias("given"))
        table = parser.parse(f"{text},x\n".encode())
        if not isinstance(table, pa.Table):  # refused, or read as text for the cast to judge
            continue
        taken += 1
        got = pl.from_arrow(table).select(pl.col("v").cast(physical)).item()  # type: ignore[union-attr]
        want = careful.item(0, "v")
        assert not (careful.item(0, "given") and want is None), f"Arrow takes {text!r} as {got!r}; the cast refuses it"
        assert got == want or (got != got and want != want), f"{text!r}: Arrow {got!r}, the cast {want!r}"
    assert taken >= 2  # Arrow does read this type: the comparison above ran
