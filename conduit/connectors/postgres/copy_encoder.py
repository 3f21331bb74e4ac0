"""PostgreSQL binary COPY, encoded column by column (no per-row Python, no per-value C loop).

A binary COPY row is ``int16 field count`` then, per field, ``int32 length`` and the
value's bytes (length -1 for NULL). :class:`CopyEncoder` builds each Arrow batch's rows
with vectorized numpy/Arrow operations: runs of fixed-width columns without nulls are
written into one packed numpy record array (big-endian fields, so numpy does the byte
swapping in one strided pass per column) that also carries the length prefix of the
text or binary column after it, nullable fixed-width columns become binary arrays of
length-prefixed values, and ``binary_join_element_wise`` concatenates the parts of each
row. The joined array's value buffer *is* the COPY payload.

Decimals become ``numeric`` with a fixed number of base-10000 digits per column (the
server strips leading and trailing zero digits), computed with integer arithmetic on
the 128-bit values: 64-bit when the precision allows it, 32-bit limbs otherwise.

Examples
--------
>>> import pyarrow as pa
>>> from decimal import Decimal
>>> batch = pa.record_batch({"a": pa.array([1, None], pa.int32()), "t": ["x", None], "d": pa.array([Decimal("-1.50"), Decimal("12345.00")], pa.decimal128(7, 2))})
>>> enc = CopyEncoder(batch.schema)
>>> enc.columns
['a', 't', 'd']
>>> payload = enc.encode(batch).to_pybytes()
>>> payload[:10].hex()  # 3 fields; int4 1
'00030000000400000001'
>>> len(payload)  # two rows: 2 + (4+4) + (4+1) + (4+8+2*3), then 2 + 4 + 4 + (4+8+2*3) = 61
61
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from conduit.schema import is_bytes, is_text

HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8  # signature, flags, header extension length
TRAILER = b"\xff\xff"
_PG_EPOCH_DAYS = 10_957  # 2000-01-01 in days since 1970-01-01
_PG_EPOCH_US = 946_684_800_000_000
SLICE_ROWS = 16_384  # rows encoded at once: bounds the encoder's temporaries to a few MiB
_NULL = pa.scalar(b"\xff\xff\xff\xff", pa.large_binary())
_MAX_SAME_LENGTH = 64  # wider values of one length still go through the join (a packed row stays small)


@dataclass(frozen=True)
class _Fixed:
    """A fixed-width column: its big-endian numpy dtype and how to write its values.

    ``write(dst, arr)`` fills ``dst`` (a field view of a packed record array, one
    element per row) from ``arr``; null slots may hold anything.
    """

    dtype: np.dtype
    write: Callable[[np.ndarray, pa.Array], None]


def _primitive(arr: pa.Array, dtype: str) -> np.ndarray:
    """The value buffer of a primitive array as numpy (no copy; null slots hold garbage)."""
    return np.frombuffer(arr.buffers()[1], dtype=dtype, count=arr.offset + len(arr))[arr.offset :]


def _copy(native: str, shift: int = 0) -> Callable[[np.ndarray, pa.Array], None]:
    def write(dst: np.ndarray, arr: pa.Array) -> None:
        dst[...] = _primitive(arr, native) - shift if shift else _primitive(arr, native)

    return write


def _bool(dst: np.ndarray, arr: pa.Array) -> None:
    dst[...] = arr.fill_null(False).to_numpy(zero_copy_only=False)


def _interval(dst: np.ndarray, arr: pa.Array) -> None:
    """(microseconds, days, months) of a duration[us] or month_day_nano interval."""
    if pa.types.is_duration(arr.type):
        dst["us"], dst["days"], dst["months"] = _primitive(arr, "<i8"), 0, 0
    else:
        raw = np.frombuffer(arr.buffers()[1], dtype=[("m", "<i4"), ("d", "<i4"), ("ns", "<i8")], count=arr.offset + len(arr))[arr.offset :]
        dst["us"], dst["days"], dst["months"] = raw["ns"] // 1000, raw["d"], raw["m"]


def _uuid(dst: np.ndarray, arr: pa.Array) -> None:
    storage = arr.storage if isinstance(arr, pa.ExtensionArray) else arr
    dst[...] = np.frombuffer(storage.buffers()[1], dtype="V16", count=storage.offset + len(storage))[storage.offset :]


def _numeric(t: pa.Decimal128Type) -> _Fixed:
    """numeric with ``ceil((p-s)/4)`` integer and ``ceil(s/4)`` fraction digits (base 10000)."""
    p, s = t.precision, t.scale
    whole, frac = max(1, (p - s + 3) // 4), max(0, (s + 3) // 4)
    ndigits = whole + frac
    up = 10 ** (4 * frac - s)  # aligns the unscaled value to whole base-10000 groups

    def write(dst: np.ndarray, arr: pa.Array) -> None:
        words = np.frombuffer(arr.buffers()[1], dtype="<i8", count=2 * (arr.offset + len(arr)))[2 * arr.offset :]
        lo, hi = words[0::2], words[1::2]
        # built native and contiguous, swapped in one pass, copied as whole records:
        # per-field big-endian writes of 2-byte values cost several times more
        block = np.empty((len(arr), 4 + ndigits), dtype=np.int16)
        block[:, 0], block[:, 1], block[:, 3] = ndigits, whole - 1, max(s, 0)
        block[:, 2] = (hi < 0).view(np.uint8) * np.int16(0x4000)
        if p <= 18 and s >= 0:  # |value| < 10**18: int64 arithmetic
            mag = np.abs(lo)
            q = mag // 10**s if s else mag
            _digits(block[:, 4 : 4 + whole], q)
            if frac:
                _digits(block[:, 4 + whole :], (mag - q * 10**s) * up)
        else:
            for i, g in enumerate(_groups128(lo.view(np.uint64), hi.view(np.uint64), hi < 0, up, ndigits)):
                block[:, 4 + i] = g
        block.byteswap(inplace=True)
        dst[...] = block.view(f"V{block.shape[1] * 2}")[:, 0]

    return _Fixed(np.dtype(f"V{2 * (4 + ndigits)}"), write)


def _digits(dst: np.ndarray, v: np.ndarray) -> None:
    """Base-10000 digits of non-negative int64 ``v`` into the columns of ``dst`` (most significant first)."""
    for k in range(dst.shape[1] - 1, 0, -1):
        q = v // 10000
        dst[:, k] = v - q * 10000
        v = q
    dst[:, 0] = v


def _groups128(lo: np.ndarray, hi: np.ndarray, neg: np.ndarray, up: int, n: int) -> list[np.ndarray]:
    """``n`` base-10000 digits of ``|value| * up`` for 128-bit two's complement values.

    The magnitude is held in five 32-bit limbs (in uint64 lanes, most significant
    first): multiplied by ``up`` (< 2**32) with carries, then divided by 10000 ``n``
    times; every intermediate fits 64 bits.
    """
    one, bits, mask = np.uint64(1), np.uint64(32), np.uint64(0xFFFFFFFF)
    lo_m = np.where(neg, ~lo + one, lo)
    hi_m = np.where(neg, ~hi + (lo == 0).astype(np.uint64), hi)
    limbs = [np.zeros_like(lo), hi_m >> bits, hi_m & mask, lo_m >> bits, lo_m & mask]
    carry = np.zeros_like(lo)
    for i in range(len(limbs) - 1, -1, -1):
        cur = limbs[i] * np.uint64(up) + carry
        limbs[i], carry = cur & mask, cur >> bits
    digits = []
    for _ in range(n):
        rem = np.zeros_like(lo)
        for i, limb in enumerate(limbs):
            limbs[i], rem = np.divmod((rem << bits) | limb, np.uint64(10000))
        digits.append(rem.astype(np.int64))
    return digits[::-1]


def _fixed(t: pa.DataType) -> _Fixed | None:
    """How to encode a fixed-width Arrow type, or None for a variable-width one."""
    simple = {pa.int16(): ">i2", pa.int32(): ">i4", pa.int64(): ">i8", pa.float32(): ">f4", pa.float64(): ">f8"}
    if t in simple:
        return _Fixed(np.dtype(simple[t]), _copy("<" + simple[t][1:]))
    if pa.types.is_boolean(t):
        return _Fixed(np.dtype("u1"), _bool)
    if pa.types.is_date32(t):
        return _Fixed(np.dtype(">i4"), _copy("<i4", _PG_EPOCH_DAYS))
    if pa.types.is_timestamp(t):  # staged as timestamp[us] (with or without zone)
        return _Fixed(np.dtype(">i8"), _copy("<i8", _PG_EPOCH_US))
    if pa.types.is_time64(t):
        return _Fixed(np.dtype(">i8"), _copy("<i8"))
    if pa.types.is_duration(t) or pa.types.is_interval(t):
        return _Fixed(np.dtype([("us", ">i8"), ("days", ">i4"), ("months", ">i4")]), _interval)
    if pa.types.is_decimal(t) and t.bit_width == 128 and t.scale >= -9:
        return _numeric(t)
    if isinstance(t, pa.BaseExtensionType) and t.extension_name == "arrow.uuid":
        return _Fixed(np.dtype("V16"), _uuid)
    return None


def _as_binary(packed: np.ndarray) -> pa.Array:
    """A binary array whose values are the rows of a packed record array."""
    n, width = len(packed), packed.dtype.itemsize
    offsets = pa.py_buffer(np.arange(0, (n + 1) * width, width, dtype=np.int64))
    return pa.Array.from_buffers(pa.large_binary(), n, [None, offsets, pa.py_buffer(packed)])


class CopyEncoder:
    """Encode Arrow batches of one schema as binary COPY rows.

    Parameters
    ----------
    schema
        The batches' schema: staging Arrow types (see ``_pg_types.stage_schema``).
        Every type ``stage_schema`` produces is supported; another raises TypeError.
    """

    def __init__(self, schema: pa.Schema):
        self.schema = schema
        self._fixed = [_fixed(f.type) for f in schema]
        self.columns = schema.names
        for f, spec in zip(schema, self._fixed, strict=True):
            if spec is None and not _is_variable(f.type):
                msg = f"column {f.name}: no binary COPY encoding for Arrow type {f.type}"
                raise TypeError(msg)

    def pieces(self, batch: pa.RecordBatch, rows: int = SLICE_ROWS) -> Iterator[pa.Buffer]:
        """The COPY rows of ``batch``, encoded ``rows`` at a time (the temporaries stay small)."""
        for start in range(0, batch.num_rows, rows):
            yield self.encode(batch.slice(start, rows))

    def encode(self, batch: pa.RecordBatch) -> pa.Buffer:
        """The COPY rows of ``batch`` (no header or trailer)."""
        parts: list[pa.Array] = []
        run: list[tuple[int, _Fixed]] = []  # consecutive fixed-width columns without nulls
        for i, (spec, col) in enumerate(zip(self._fixed, batch.columns, strict=True)):
            if spec is None and col.null_count == 0:
                spec = _same_length(col)
            if spec is not None and col.null_count == 0:
                run.append((i, spec))
                continue
            if spec is not None:
                if run or not parts:
                    parts.append(self._packed(run, batch, lead=not parts))
                parts += self._nullable(spec, col)
            else:  # the value's length prefix rides on the packed part before it: one join input fewer
                lengths, values = _variable(col)
                parts += [self._packed(run, batch, lead=not parts, lengths=lengths), values]
            run = []
        if run or not parts:
            parts.append(self._packed(run, batch, lead=not parts))
        rows = parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, pa.scalar(b"", pa.large_binary()))
        offsets = _offsets(rows)
        return rows.buffers()[2][int(offsets[0]) : int(offsets[-1])]

    def _packed(self, run: list[tuple[int, _Fixed]], batch: pa.RecordBatch, lead: bool, lengths: np.ndarray | None = None) -> pa.Array:
        """One binary value per row: (field count if ``lead``) + every column of ``run`` (+ the next value's ``lengths``)."""
        fields: list[tuple[str, np.dtype]] = [("n", np.dtype(">i2"))] if lead else []
        for i, spec in run:
            fields += [(f"l{i}", np.dtype(">i4")), (f"v{i}", spec.dtype)]
        if lengths is not None:
            fields.append(("next", np.dtype(">i4")))
        packed = np.empty(batch.num_rows, dtype=np.dtype(fields))
        if lead:
            packed["n"] = len(self.schema)
        for i, spec in run:
            packed[f"l{i}"] = spec.dtype.itemsize
            spec.write(packed[f"v{i}"], batch.column(i))
        if lengths is not None:
            packed["next"] = lengths
        return _as_binary(packed)

    @staticmethod
    def _nullable(spec: _Fixed, col: pa.Array) -> list[pa.Array]:
        packed = np.empty(len(col), dtype=[("l", ">i4"), ("v", spec.dtype)])
        packed["l"] = spec.dtype.itemsize
        spec.write(packed["v"], col)
        return [pc.if_else(col.is_valid(), _as_binary(packed), _NULL)]


def _same_length(col: pa.Array) -> _Fixed | None:
    """Text or binary values of one byte length (codes, flags), no NULLs: written as fixed-width fields.

    They join the packed run around them instead of adding two join inputs per row: on
    two 1-byte flag columns with dates between them, 11 parts per row become 6.
    """
    if len(col) == 0 or pa.types.is_string_view(col.type) or pa.types.is_binary_view(col.type):
        return None
    offsets = _offsets(col)
    n = int(offsets[1] - offsets[0])
    if not 0 < n <= _MAX_SAME_LENGTH or int(offsets[-1] - offsets[0]) != n * len(col) or (np.diff(offsets) != n).any():
        return None
    return _Fixed(np.dtype(f"V{n}"), _bytes)


def _bytes(dst: np.ndarray, arr: pa.Array) -> None:
    """The values of a :func:`_same_length` column, as rows of its width."""
    offsets = _offsets(arr)
    dst[...] = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[int(offsets[0]) : int(offsets[-1])].view(dst.dtype)


def _variable(col: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """(lengths, -1 for NULL; the values as large_binary, NULL as empty) of a text or binary column."""
    if col.type != pa.large_binary():
        col = col.cast(pa.large_binary())  # parts must share one type; 64-bit offsets never overflow
    lengths = np.diff(_offsets(col))
    if col.null_count:
        lengths[~col.is_valid().to_numpy(zero_copy_only=False)] = -1
        col = col.fill_null(b"")
    return lengths, col


def _offsets(arr: pa.Array) -> np.ndarray:
    """The value offsets of a string or binary array (32- or 64-bit), from its first row to one past its last."""
    width = 8 if pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type) else 4
    return np.frombuffer(arr.buffers()[1], dtype=f"<i{width}", count=arr.offset + len(arr) + 1)[arr.offset :]


def _is_variable(t: pa.DataType) -> bool:
    return is_text(t) or is_bytes(t)
