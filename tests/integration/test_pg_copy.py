"""The binary COPY path (pgpq) against a real server, read back with psycopg.

Every batch is cast to its staging types, encoded by
:class:`~conduit.connectors.postgres.copy_encoder.CopyEncoder` and COPYed into a table
of the staging DDL; the rows psycopg reads back (binary loaders, an independent
decoder) must equal the staged batch's own Python values, row for row.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from decimal import Decimal

import pyarrow as pa
import pytest

from conduit._sql import quote
from conduit.connectors.postgres.copy_encoder import CopyEncoder
from conduit.connectors.postgres.types import cast_batch, columns_for, stage_schema

pytestmark = pytest.mark.postgres


def _decimals(rng: random.Random, precision: int, scale: int, n: int) -> list[Decimal | None]:
    out: list[Decimal | None] = []
    for i in range(n):
        if i % 7 == 3:
            out.append(None)
            continue
        digits = rng.randint(1, precision)
        unscaled = rng.randint(-(10**digits) + 1, 10**digits - 1)
        out.append(_dec(unscaled, scale))
    out[0], out[1], out[2] = _dec(10**precision - 1, scale), _dec(1 - 10**precision, scale), _dec(0, scale)  # the extremes
    return out


def _dec(unscaled: int, scale: int) -> Decimal:
    return Decimal(f"{unscaled}E-{scale}")  # exact (arithmetic would round to 28 digits)


def _batch(n: int = 300, seed: int = 7) -> pa.RecordBatch:
    rng = random.Random(seed)

    def nulls(values: list[object]) -> list[object]:
        return [None if i % 5 == 1 else v for i, v in enumerate(values)]

    base = dt.datetime(1969, 12, 31, 23, 59, 59, 999999)
    cols: dict[str, pa.Array] = {
        "n": pa.array(range(n), pa.int32()),
        "i2": pa.array([rng.randint(-32768, 32767) for _ in range(n)], pa.int16()),
        "i4": pa.array(nulls([rng.randint(-(2**31), 2**31 - 1) for _ in range(n)]), pa.int32()),
        "i8": pa.array([rng.randint(-(2**63), 2**63 - 1) for _ in range(n)], pa.int64()),
        "u8": pa.array([rng.randint(0, 2**64 - 1) for _ in range(n)], pa.uint64()),
        "f4": pa.array(nulls([rng.uniform(-1e6, 1e6) for _ in range(n)]), pa.float32()),
        "f8": pa.array([rng.uniform(-1e300, 1e300) for _ in range(n)], pa.float64()),
        "b": pa.array(nulls([rng.random() < 0.5 for _ in range(n)]), pa.bool_()),
        "d": pa.array(nulls([dt.date(1900, 1, 1) + dt.timedelta(days=rng.randint(0, 80000)) for _ in range(n)]), pa.date32()),
        "ts": pa.array([base + dt.timedelta(microseconds=rng.randint(-(10**15), 10**15)) for _ in range(n)], pa.timestamp("us")),
        "tstz": pa.array(nulls([base + dt.timedelta(microseconds=rng.randint(-(10**15), 10**15)) for _ in range(n)]), pa.timestamp("ns", "UTC")),
        "t": pa.array(nulls([dt.time(rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59), rng.randint(0, 999999)) for _ in range(n)]), pa.time64("us")),
        "dur": pa.array(nulls([dt.timedelta(microseconds=rng.randint(-(10**12), 10**12)) for _ in range(n)]), pa.duration("us")),
        "dec_15_2": pa.array(_decimals(rng, 15, 2, n), pa.decimal128(15, 2)),
        "dec_18_0": pa.array(_decimals(rng, 18, 0, n), pa.decimal128(18, 0)),
        "dec_9_9": pa.array(_decimals(rng, 9, 9, n), pa.decimal128(9, 9)),
        "dec_38_10": pa.array(_decimals(rng, 38, 10, n), pa.decimal128(38, 10)),
        "dec_25_7": pa.array(_decimals(rng, 25, 7, n), pa.decimal128(25, 7)),
        "dec_20_0": pa.array(_decimals(rng, 20, 0, n), pa.decimal128(20, 0)),
        "s": pa.array(nulls([rng.choice(["", "a", "héllo wörld", "日本語", "tab\there", "quote'\"", "x" * 300]) for _ in range(n)]), pa.string()),
        "ls": pa.array([str(rng.random()) for _ in range(n)], pa.large_string()),
        "code": pa.array([rng.choice(["AB", "é", "Zz"]) if i < 150 else "long" for i in range(n)], pa.string()),
        "flag": pa.array([rng.choice([b"Y", b"N"]) for _ in range(n)], pa.binary()),
        "sv": pa.array(nulls([rng.choice(["short", "a much longer string than twelve bytes"]) for _ in range(n)]), pa.string_view()),
        "bin": pa.array(nulls([rng.randbytes(rng.randint(0, 40)) for _ in range(n)]), pa.binary()),
        "u": pa.array(nulls([uuid.UUID(int=rng.getrandbits(128)).bytes for _ in range(n)]), pa.uuid()),
        "j": pa.array(nulls([[rng.randint(0, 9)] * rng.randint(0, 3) for _ in range(n)]), pa.list_(pa.int64())),
    }
    return pa.RecordBatch.from_pydict(cols)


def _ddl(schema: pa.Schema, cols: dict) -> str:
    return ", ".join(f"{quote(f.name)} {cols[f.name].stage}" for f in schema)


def _copy(conn, table: str, enc: CopyEncoder, batches: list[pa.RecordBatch]) -> None:
    with conn.cursor().copy(f"COPY {table} ({', '.join(quote(c) for c in enc.columns)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(enc.header())
        for b in batches:
            for piece in enc.pieces(b):
                copy.write(piece)
        copy.write(enc.finish())


def _expected(value: object) -> object:
    if isinstance(value, bytes) and len(value) == 16:  # uuid storage (pyarrow versions differ in what to_pylist gives)
        return uuid.UUID(bytes=value)
    return value


def test_round_trip_through_the_server(pg_uri: str, pg_schema: str) -> None:
    import psycopg

    batch = _batch()
    cols = columns_for(batch.schema, [])
    target = stage_schema(batch.schema, cols)
    staged = cast_batch(batch, target, cols)
    # sliced batches have non-zero offsets in every buffer
    batches = [staged.slice(0, 100), staged.slice(100, 1), staged.slice(101)]
    table = f"{quote(pg_schema)}.ours"
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} ({_ddl(target, cols)})")
        _copy(conn, table, CopyEncoder(target, {c: col.stage for c, col in cols.items()}), batches)
        got = conn.cursor(binary=True).execute(f"SELECT {', '.join(quote(c) for c in target.names)} FROM {table} ORDER BY n").fetchall()
    expected = [tuple(_expected(v) if k != "flag" and k != "bin" else v for k, v in row.items()) for row in staged.to_pylist()]
    assert len(got) == batch.num_rows
    for want, row in zip(expected, got, strict=True):
        assert tuple(row) == want
    assert got[0][target.names.index("dec_38_10")] == _dec(10**38 - 1, 10)
    assert got[1][target.names.index("dec_38_10")] == _dec(1 - 10**38, 10)


def test_month_day_nano_intervals(pg_uri: str, pg_schema: str) -> None:
    import psycopg

    values = [pa.MonthDayNano([14, -3, 5_000_123_000]), None, pa.MonthDayNano([0, 0, -1000]), None, pa.MonthDayNano([-1, 40, 86_400_000_000_000])]
    arr = pa.array(values, pa.month_day_nano_interval())
    batch = pa.record_batch({"iv": arr})
    enc = CopyEncoder(batch.schema)
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {quote(pg_schema)}.iv (n serial, iv interval)")
        _copy(conn, f"{quote(pg_schema)}.iv", enc, [batch.slice(0, 1), batch.slice(1)])  # the second slice starts at an offset, with NULLs
        rows = conn.execute(f"SELECT iv::text FROM {quote(pg_schema)}.iv ORDER BY n").fetchall()
    assert rows == [("1 year 2 mons -3 days +00:00:05.000123",), (None,), ("-00:00:00.000001",), (None,), ("-1 mons +40 days 24:00:00",)]


def test_unknown_type_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match="no binary COPY encoding"):
        CopyEncoder(pa.schema([pa.field("m", pa.map_(pa.string(), pa.int64()))]))


def test_a_column_type_that_would_misread_the_bytes_is_an_error() -> None:
    """int64 and float8 are both 8 bytes: binary COPY would store garbage without this check."""
    schema = pa.schema([("x", pa.int64()), ("u", pa.uuid())])
    CopyEncoder(schema, {"x": "bigint", "u": "uuid"})
    with pytest.raises(TypeError, match=r"column x: binary COPY of Arrow int64 .* into a double precision column"):
        CopyEncoder(schema, {"x": "double precision", "u": "uuid"})
    with pytest.raises(TypeError, match="column u"):
        CopyEncoder(schema, {"x": "bigint", "u": "bytea"})


def test_pieces_are_the_whole_encoding_cut_at_rows() -> None:
    """Encoding a batch a few rows at a time gives the same bytes as encoding it whole."""
    batch = _batch(n=50, seed=3)
    cols = columns_for(batch.schema, [])
    target = stage_schema(batch.schema, cols)
    enc = CopyEncoder(target)
    cast = cast_batch(batch, target, cols)
    cut = enc.header() + b"".join(enc.pieces(cast, rows=7)) + enc.finish()
    whole = CopyEncoder(target)
    assert cut == whole.header() + b"".join(whole.pieces(cast, rows=50)) + whole.finish()


@pytest.mark.parametrize(("precision", "scale"), [(1, 0), (4, 4), (5, 1), (9, 9), (12, 5), (15, 2), (18, 0), (18, 16), (18, 17), (19, 2)])
def test_decimals_read_back_as_the_same_text(pg_uri: str, pg_schema: str, precision: int, scale: int) -> None:
    """Each width and scale, whichever encodes it (NumPy's numeric layout or pgpq), in batches of large, small, negative, NULL and zero values."""
    import psycopg

    rng = random.Random(precision * 100 + scale)
    values = _decimals(rng, precision, scale, 400)
    small = [_dec(rng.randint(-(10**scale) + 1, 10**scale - 1), scale) for _ in range(50)]  # |value| < 1: no whole digit
    batches = [values[:1], values[1:250], values[250:], small, [None, None], [_dec(0, scale)] * 3]
    arrays = [pa.array(b, pa.decimal128(precision, scale)) for b in batches]
    arrays[1] = pa.concat_arrays([arrays[1], arrays[2]]).slice(0, 249)  # an offset into shared buffers
    table = f"{quote(pg_schema)}.dec"
    enc = CopyEncoder(pa.schema([("v", pa.decimal128(precision, scale))]), {"v": f"numeric({precision},{scale})"})
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (n serial, v numeric({precision},{scale}))")
        _copy(conn, table, enc, [pa.record_batch({"v": a}) for a in arrays])
        got = [r[0] for r in conn.execute(f"SELECT v::text FROM {table} ORDER BY n").fetchall()]
    want = [None if v is None else f"{v:.{scale}f}" for a in arrays for v in a.to_pylist()]
    assert got == want


def test_a_decimal_past_the_column_precision_is_refused(pg_uri: str, pg_schema: str) -> None:
    """Arrow does not check a decimal's precision: the server does, on what the encoder sends (the digits past it are not dropped)."""
    import numpy as np
    import psycopg

    over = pa.Array.from_buffers(pa.decimal128(5, 2), 2, [None, pa.py_buffer(np.array([12345, 0, 1234567, 0], np.int64))])  # 123.45 and 12345.67
    enc = CopyEncoder(pa.schema([("v", pa.decimal128(5, 2))]), {"v": "numeric(5,2)"})
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {quote(pg_schema)}.over (v numeric(5,2))")
        with pytest.raises(psycopg.errors.NumericValueOutOfRange):
            _copy(conn, f"{quote(pg_schema)}.over", enc, [pa.record_batch({"v": over})])
        assert conn.execute(f"SELECT count(*) FROM {quote(pg_schema)}.over").fetchone() == (0,)
