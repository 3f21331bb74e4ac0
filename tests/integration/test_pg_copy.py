"""The vectorized binary COPY encoder against a real server, checked against ADBC's encoder.

Every batch is COPYed twice into tables of the same DDL: once through
:class:`~conduit.connectors.postgres.copy_encoder.CopyEncoder` + psycopg, once through
``adbc_ingest`` (the driver's own encoder, an independent path). The tables must hold
the same rows (``EXCEPT ALL`` both ways).
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from decimal import Decimal

import pyarrow as pa
import pytest

from conduit._sql import quote
from conduit.connectors.postgres.copy_encoder import HEADER, TRAILER, CopyEncoder
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
        # no NULLs, one byte length in the first two slices (encoded as fixed-width fields), then a longer value
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


def test_encoder_matches_adbc(pg_uri: str, pg_schema: str) -> None:
    import adbc_driver_postgresql.dbapi as adbc
    import psycopg

    batch = _batch()
    cols = columns_for(batch.schema, [])
    target = stage_schema(batch.schema, cols)
    staged = cast_batch(batch, target, cols)
    # sliced batches have non-zero offsets in every buffer; an all-valid slice takes the packed path
    batches = [staged.slice(0, 100), staged.slice(100, 1), staged.slice(101)]
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        for name in ("ours", "theirs"):
            conn.execute(f"CREATE TABLE {quote(pg_schema)}.{name} ({_ddl(target, cols)})")
        enc = CopyEncoder(target)
        with conn.cursor().copy(f"COPY {quote(pg_schema)}.ours ({', '.join(quote(c) for c in enc.columns)}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(HEADER)
            for b in batches:
                copy.write(enc.encode(b))
            copy.write(TRAILER)
    with adbc.connect(pg_uri) as conn, conn.cursor() as cur:
        cur.adbc_ingest("theirs", pa.RecordBatchReader.from_batches(target, iter(batches)), mode="append", db_schema_name=pg_schema)
        conn.commit()
    with psycopg.connect(pg_uri) as conn:
        s = quote(pg_schema)
        assert conn.execute(f"SELECT count(*) FROM {s}.ours").fetchone() == (batch.num_rows,)
        assert conn.execute(f"SELECT count(*) FROM {s}.theirs").fetchone() == (batch.num_rows,)
        for a, b in (("ours", "theirs"), ("theirs", "ours")):
            diff = conn.execute(f"SELECT * FROM {s}.{a} EXCEPT ALL SELECT * FROM {s}.{b} LIMIT 3").fetchall()
            assert diff == [], f"rows only in {a}: {diff}"
        # spot values through a third path: Python's own view of the source batch
        got = conn.execute(f"SELECT dec_38_10, dec_15_2, ts, d, s FROM {s}.ours WHERE dec_38_10 IS NOT NULL ORDER BY dec_38_10 DESC LIMIT 1").fetchone()
        assert got is not None and got[0] == _dec(10**38 - 1, 10)


def test_month_day_nano_intervals(pg_uri: str, pg_schema: str) -> None:
    import psycopg

    batch = pa.record_batch({"iv": pa.array([pa.MonthDayNano([14, -3, 5_000_123_000]), None, pa.MonthDayNano([0, 0, -1000])], pa.month_day_nano_interval())})
    enc = CopyEncoder(batch.schema)
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {quote(pg_schema)}.iv (iv interval)")
        with conn.cursor().copy(f"COPY {quote(pg_schema)}.iv (iv) FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(HEADER + enc.encode(batch).to_pybytes() + TRAILER)
        rows = conn.execute(f"SELECT iv::text FROM {quote(pg_schema)}.iv").fetchall()
    assert rows == [("1 year 2 mons -3 days +00:00:05.000123",), (None,), ("-00:00:00.000001",)]


def test_unknown_type_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match="column m: no binary COPY encoding"):
        CopyEncoder(pa.schema([pa.field("m", pa.map_(pa.string(), pa.int64()))]))


def test_pieces_are_the_whole_encoding_cut_at_rows() -> None:
    """Encoding a batch a few rows at a time gives the same bytes as encoding it whole."""
    batch = _batch(n=50, seed=3)
    cols = columns_for(batch.schema, [])
    target = stage_schema(batch.schema, cols)
    enc = CopyEncoder(target)
    cast = cast_batch(batch, target, cols)
    pieces = list(enc.pieces(cast, rows=7))
    assert len(pieces) == 8
    assert b"".join(p.to_pybytes() for p in pieces) == enc.encode(cast).to_pybytes()
