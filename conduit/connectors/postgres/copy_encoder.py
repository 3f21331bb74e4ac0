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
    validity = arr.buffers()[0] if arr.null_count else None
    if validity is not None and arr.offset:
        validity = arr.is_valid().buffers()[1]
    return pa.Array.from_buffers(_FIXED16, n, [validity, pa.py_buffer(out)], null_count=arr.null_count)


def _rewrite(t: pa.DataType) -> tuple[Callable[[pa.Array], pa.Array], str] | None:
    """How a staging type pgpq cannot encode becomes one it can, and the column type it is for (None: pgpq takes it as is)."""
    if isinstance(t, pa.BaseExtensionType) and t.extension_name == "arrow.uuid":
        return _uuid, "uuid"
    if pa.types.is_interval(t):
        return _month_day_nano, "interval"
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
        self._encoded = pa.schema([pa.field(f.name, _FIXED16, f.nullable) if r else f for f, r in zip(schema, rewrites, strict=True)])
        try:
            self._encoder = ArrowToPostgresBinaryEncoder(self._encoded)
        except Exception as exc:  # noqa: BLE001 - pgpq raises its own exception types
            msg = f"no binary COPY encoding for {schema}: {exc}"
            raise TypeError(msg) from None
        if stage_types is not None:
            for f, r, col in zip(schema, rewrites, self._encoder.schema().columns, strict=True):
                reads = (r[1],) if r else _READS.get(type(col.data_type).__name__, ())
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
