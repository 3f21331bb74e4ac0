"""PostgreSQL binary COPY, encoded by pgpq (Rust, whole Arrow batches at a time).

A binary COPY row is ``int16 field count`` then, per field, ``int32 length`` and the
value's bytes (length -1 for NULL); no field carries a type OID, so the server reads
each field with the receive function of its *column*. The staging tables are created
by Conduit (:mod:`conduit.connectors.postgres.types`) and every batch is cast to the
staging Arrow types first, so the bytes pgpq writes for each Arrow type are what the
column's type reads. Two staging types pgpq has no encoder for are rewritten, column
at a time, into 16-byte fixed-size binary values holding their PostgreSQL binary form
(which pgpq writes as length 16 plus the bytes):

- ``uuid`` (Arrow's ``arrow.uuid``): its storage is already the 16 bytes;
- ``interval`` from a month_day_nano interval: big-endian microseconds (int64), days
  (int32), months (int32).

A third is rewritten for speed: pgpq converts a decimal a value at a time (SF1
lineitem's four decimal columns took it as long as the other twelve together), so a
``decimal128`` of precision 18 or less (its value is its low 64 bits) and scale 0-16
becomes ``numeric_recv``'s own layout, computed by NumPy a batch at a time
(:func:`_numeric`), as binary values pgpq writes as they are (measured in the lab
notebook, ``benchmarks/README.md``, fourth session of 2026-12-06).

Examples
--------
>>> import pyarrow as pa
>>> from decimal import Decimal
>>> batch = pa.record_batch({"a": pa.array([1, None], pa.int32()), "t": ["x", None], "d": pa.array([Decimal("-1.50"), Decimal("12345.00")], pa.decimal128(7, 2))})
>>> enc = CopyEncoder(batch.schema)
>>> enc.columns
['a', 't', 'd']
>>> header = enc.header()
>>> header[:11]
b'PGCOPY\\n\\xff\\r\\n\\x00'
>>> payload = b"".join(enc.pieces(batch)) + enc.finish()
>>> payload[:10].hex()  # 3 fields; int4 1
'00030000000400000001'
>>> payload[-2:]  # the trailer
b'\\xff\\xff'
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import numpy as np
import pyarrow as pa

SLICE_ROWS = 8_192  # rows encoded at once: about 1 MiB of COPY data per piece (32K-row pieces held ~45 MiB more of malloc at peak, for no speed)
_FIXED16 = pa.binary(16)
# the staging column types (types.py's names, without a typmod) whose receive function reads what pgpq writes for each of its types
_READS = {
    "Bool": ("boolean",),
    "Int2": ("smallint",),
    "Int4": ("integer",),
    "Int8": ("bigint",),
    "Float4": ("real",),
    "Float8": ("double precision",),
    "Numeric": ("numeric",),
    "Text": ("text",),
    "Bytea": ("bytea",),
    "Date": ("date",),
    "Time": ("time",),
    "Timestamp": ("timestamp", "timestamptz"),  # both microseconds since 2000-01-01 (UTC for timestamptz)
    "Interval": ("interval",),
}


def _uuid(arr: pa.Array) -> pa.Array:
    return arr.storage if isinstance(arr, pa.ExtensionArray) else arr


def _month_day_nano(arr: pa.Array) -> pa.Array:
    """interval_recv's layout (int64 microseconds, int32 days, int32 months; big-endian) of each value."""
    n = len(arr)
    raw = np.frombuffer(arr.buffers()[1], dtype=[("m", "<i4"), ("d", "<i4"), ("ns", "<i8")], count=arr.offset + n)[arr.offset :]
    out = np.empty(n, dtype=[("us", ">i8"), ("d", ">i4"), ("m", ">i4")])
    out["us"], out["d"], out["m"] = raw["ns"] // 1000, raw["d"], raw["m"]
    return pa.Array.from_buffers(_FIXED16, n, [_validity(arr), pa.py_buffer(out)], null_count=arr.null_count)


def _validity(arr: pa.Array) -> pa.Buffer | None:
    """``arr``'s validity bitmap from its first value (a slice's bitmap starts at its offset), or None without nulls."""
    if not arr.null_count:
        return None
    return arr.is_valid().buffers()[1] if arr.offset else arr.buffers()[0]


_NUMERIC_NEG = 0x4000  # numeric_recv's sign of a negative value
_NBASE = 10_000  # a numeric digit: 4 decimal digits


def _numeric(arr: pa.Array) -> pa.Array:
    """numeric_recv's layout of each value of a decimal128 of precision 18 or less, all of one width.

    The layout is big-endian ``int16`` digit count, weight (of the first digit, in
    powers of 10000), sign and display scale, then the base-10000 digits. Every value of
    the batch gets the digits that its largest value needs (leading zero digits, which
    the server strips: ``apply_typmod`` checks the column's precision on the true
    weight), so one template row makes the headers.

    >>> import pyarrow as pa
    >>> from decimal import Decimal
    >>> out = _numeric(pa.array([Decimal("-12345.67"), Decimal("0.05"), None], pa.decimal128(9, 2)))
    >>> [v.hex(" ", 2) if v else v for v in out.to_pylist()]
    ['0003 0001 4000 0002 0001 0929 1a2c', '0003 0001 0000 0002 0000 0000 01f4', None]
    """
    n, scale = len(arr), arr.type.scale
    raw = np.frombuffer(arr.buffers()[1], "<i8", count=2 * (arr.offset + n))[2 * arr.offset :: 2]  # |value| < 10**18: the low half is the value
    validity = _validity(arr)
    if validity is not None:  # a null's slot may hold anything
        raw = np.where(np.unpackbits(np.frombuffer(validity, np.uint8), count=n, bitorder="little").view(bool), raw, 0)
    lo, hi = (int(raw.min()), int(raw.max())) if n else (0, 0)
    top = max(-lo, hi)
    fraction = -(-scale // 4)  # digits after the point
    whole = 1  # digits before it
    while top // 10**scale >= _NBASE**whole:
        whole += 1
    width = 4 + whole + fraction  # int16s a value
    values = np.abs(raw) if lo < 0 else raw
    values = values.astype(np.uint32) if top < 2**32 and fraction <= 2 else values.view(np.uint64)  # the fraction's digits fit too
    template = np.zeros(width, ">u2")
    template[:4] = whole + fraction, whole - 1, 0, scale
    out = np.frombuffer(bytearray(template.tobytes()) * n, np.uint16).reshape(n, width)  # bytearray's repeat: memcpy, doubling
    if lo < 0:
        out[raw < 0, 2] = np.array([_NUMERIC_NEG], ">u2").view(np.uint16)[0]

    def put(first: int, count: int, value: np.ndarray) -> None:
        """``value``'s ``count`` base-10000 digits, big-endian, into columns ``first``...; the last first."""
        for column in range(first + count - 1, first, -1):
            quotient = value // _NBASE
            digit = value - quotient * _NBASE
            out[:, column] = ((digit & 0xFF) << 8 | digit >> 8).astype(np.uint16)
            value = quotient
        out[:, first] = ((value & 0xFF) << 8 | value >> 8).astype(np.uint16)  # below 10000: the whole part's digits are as many as its largest needs

    whole_part = values // 10**scale if scale else values
    put(4, whole, whole_part)
    if fraction:
        part = values - whole_part * 10**scale
        put(4 + whole, fraction, part * 10 ** (4 * fraction - scale) if 4 * fraction != scale else part)  # padded to whole digits
    offsets = np.arange(0, 2 * width * (n + 1), 2 * width, dtype=np.int32)
    return pa.Array.from_buffers(pa.binary(), n, [validity, pa.py_buffer(offsets), pa.py_buffer(out)], null_count=arr.null_count)


def _rewrite(t: pa.DataType) -> tuple[Callable[[pa.Array], pa.Array], pa.DataType, str] | None:
    """How a staging type is rewritten before pgpq (see the module docstring): the function, its Arrow type and the column type it is for; None: pgpq takes it as is."""
    if isinstance(t, pa.BaseExtensionType) and t.extension_name == "arrow.uuid":
        return _uuid, _FIXED16, "uuid"
    if pa.types.is_interval(t):
        return _month_day_nano, _FIXED16, "interval"
    if pa.types.is_decimal128(t) and t.precision <= 18 and 0 <= t.scale <= 16:  # the fraction's digits fit 64 bits
        return _numeric, pa.binary(), "numeric"
    return None


class CopyEncoder:
    """Encode Arrow batches of one schema as binary COPY rows.

    Parameters
    ----------
    schema
        The batches' schema: staging Arrow types (see ``types.stage_schema``).
        Every type ``stage_schema`` produces is supported; another raises TypeError.
    stage_types
        Column -> the type of the column it is COPYed into (``types.PgColumn.stage``):
        a column whose type would not read pgpq's bytes raises TypeError (binary COPY
        carries no type information, so the server would misread them or reject them).
    """

    def __init__(self, schema: pa.Schema, stage_types: Mapping[str, str] | None = None):
        from pgpq import ArrowToPostgresBinaryEncoder

        self.schema = schema
        self.columns = schema.names
        rewrites = [_rewrite(f.type) for f in schema]
        self._rewrites = [r[0] if r else None for r in rewrites]
        self._encoded = pa.schema([pa.field(f.name, r[1], f.nullable) if r else f for f, r in zip(schema, rewrites, strict=True)])
        try:
            self._encoder = ArrowToPostgresBinaryEncoder(self._encoded)
        except Exception as exc:  # noqa: BLE001 - pgpq raises its own exception types
            msg = f"no binary COPY encoding for {schema}: {exc}"
            raise TypeError(msg) from None
        if stage_types is not None:
            for f, r, col in zip(schema, rewrites, self._encoder.schema().columns, strict=True):
                reads = (r[2],) if r else _READS.get(type(col.data_type).__name__, ())
                if stage_types[f.name].split("(")[0] not in reads:
                    msg = f"column {f.name}: binary COPY of Arrow {f.type} (pgpq: {col.data_type.ddl()}) into a {stage_types[f.name]} column"
                    raise TypeError(msg)

    def header(self) -> bytes:
        """The COPY stream's header."""
        return self._encoder.write_header()

    def prepare(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """``batch`` with the columns pgpq cannot encode rewritten (see the module docstring)."""
        if not any(self._rewrites):
            return batch
        arrays = [r(col) if r else col for r, col in zip(self._rewrites, batch.columns, strict=True)]
        return pa.RecordBatch.from_arrays(arrays, schema=self._encoded)

    def pieces(self, batch: pa.RecordBatch, rows: int = SLICE_ROWS) -> Iterator[bytes]:
        """The COPY rows of ``batch``, encoded ``rows`` at a time (pgpq holds back small outputs until :meth:`finish`)."""
        prepared = self.prepare(batch)
        for start in range(0, batch.num_rows, rows):
            piece = self._encoder.write_batch(prepared.slice(start, rows))
            if piece:
                yield piece

    def finish(self) -> bytes:
        """The rows held back, then the COPY stream's trailer."""
        return self._encoder.finish()
