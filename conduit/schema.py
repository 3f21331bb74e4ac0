"""Types and schemas, dialect-neutral: Conduit type names, CSV inference, diffs, evolution.

The type names of ingest.yml's ``columns`` (``bigint``, ``decimal(15,2)``, ``timestamptz``...) maps to
one Polars dtype each; Arrow types follow from Polars. Destinations translate Arrow
types to their own DDL.

Examples
--------
>>> parse_type("decimal(15, 2)")
Decimal(precision=15, scale=2)
>>> import polars as pl
>>> infer_text_types(pl.DataFrame({"flag": ["O", "F"], "n": ["1", "-2"], "d": ["2024-01-02", None], "zip": ["08123", "10001"]}))
{'flag': String, 'n': Int64, 'd': Date, 'zip': String}
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import polars as pl
import pyarrow as pa

from conduit.errors import ConfigError, SchemaMismatch

_SIMPLE: dict[str, pl.DataType] = {
    "boolean": pl.Boolean(),
    "bool": pl.Boolean(),
    "smallint": pl.Int16(),
    "integer": pl.Int32(),
    "int": pl.Int32(),
    "bigint": pl.Int64(),
    "real": pl.Float32(),
    "float": pl.Float64(),
    "double": pl.Float64(),
    "varchar": pl.String(),
    "text": pl.String(),
    "string": pl.String(),
    "json": pl.String(),
    "date": pl.Date(),
    "time": pl.Time(),
    "timestamp": pl.Datetime("us"),
    "timestamptz": pl.Datetime("us", "UTC"),
    "binary": pl.Binary(),
}
TYPE_NAMES = "boolean, smallint, integer, bigint, real, double, decimal(p,s), varchar, text, date, time, timestamp, timestamptz, json, binary"
_DECIMAL = re.compile(r"^(?:decimal|numeric)\s*\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)$")
_VARCHAR = re.compile(r"^varchar\s*\(\s*\d+\s*\)$")


def parse_type(name: str) -> pl.DataType:
    """The Polars dtype for a Conduit type name; :class:`ConfigError` for an unknown one."""
    key = name.strip().lower()
    if key in _SIMPLE:
        return _SIMPLE[key]
    if m := _DECIMAL.match(key):
        precision, scale = int(m[1]), int(m[2] or 0)
        if not 0 < precision <= 38 or scale > precision:
            msg = f"decimal({precision},{scale}) is out of range (precision 1..38, scale <= precision)"
            raise ConfigError(msg)
        return pl.Decimal(precision, scale)
    if _VARCHAR.match(key):
        return pl.String()
    msg = f"unknown type {name!r}; known: {TYPE_NAMES}"
    raise ConfigError(msg)


def is_json_type(name: str | None) -> bool:
    """Whether a declared type name asks for a JSON column."""
    return (name or "").strip().lower() == "json"


# --- CSV inference over a string sample, vectorized -------------------------------

_INT = r"^[+-]?(0|[1-9]\d{0,17})$"
_FIXED = r"^[+-]?(\d+\.\d*|\.\d+)$"
_FLOAT = r"^[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|inf|infinity|nan)$"
_DATE = r"^\d{4}-\d{2}-\d{2}$"
_TS = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?$"
_TSTZ = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}(:?\d{2})?)$"
_BOOL = r"^(?i:true|false)$"


def infer_text_types(sample: pl.DataFrame) -> dict[str, pl.DataType]:
    """Infer a dtype per string column of ``sample``; codes like 'O'/'F' stay text.

    A column is typed only when every non-null sample value parses; leading zeros
    ("007") keep a column as text; fixed-point numbers become ``decimal(p,s)`` with the
    largest scale seen (precision at least 18), so money is never a float. Columns are
    inferred on two threads (Polars releases the GIL): this runs before a load starts.
    """
    from concurrent.futures import ThreadPoolExecutor

    def infer(name: str) -> pl.DataType:
        s = sample.get_column(name)
        if s.dtype != pl.String:
            return s.dtype
        s = s.drop_nulls().str.strip_chars()
        s = s.filter(s != "")  # empty cells are NULL for typed columns, so they don't decide the type
        return _infer_one(s) if len(s) else pl.String()

    with ThreadPoolExecutor(2, thread_name_prefix="conduit-infer") as pool:
        return dict(zip(sample.columns, pool.map(infer, sample.columns), strict=True))


def _infer_one(s: pl.Series) -> pl.DataType:
    head = s.head(1)

    def all_match(pattern: str) -> bool:  # the first value first: a text column fails most patterns there, without a scan
        return bool(head.str.contains(pattern).all()) and bool(s.str.contains(pattern).all())

    if all_match(_BOOL):
        return pl.Boolean()
    if all_match(_FLOAT) and s.str.contains(r"^[+-]?0\d").any():  # zip codes, ids: "08123" is not 8123.0
        return pl.String()
    if all_match(_INT):
        return pl.Int64()
    if all_match(_FIXED):
        whole, _, frac = (s.str.replace(r"^[+-]", "").str.split_exact(".", 1).struct[i] for i in (0, 0, 1))
        scale = int(frac.str.len_chars().max() or 0)  # type: ignore[arg-type]
        digits = int(whole.str.len_chars().max() or 0) + scale  # type: ignore[arg-type]
        if digits <= 38:
            return pl.Decimal(max(18, min(38, digits + 2)), scale)
        return pl.Float64()
    if all_match(_FLOAT):
        return pl.Float64()
    if all_match(_DATE) and s.str.to_date("%Y-%m-%d", strict=False).null_count() == 0:
        return pl.Date()
    if all_match(_TS) and s.str.to_datetime(time_unit="us", strict=False).null_count() == 0:
        return pl.Datetime("us")
    if all_match(_TSTZ):
        return pl.Datetime("us", "UTC")
    return pl.String()


# --- diffs between an incoming schema and a destination table ------------------------

ChangeKind = Literal["add_column", "widen", "incompatible", "missing_in_source"]
_INT_RANK = {pa.int8(): 1, pa.int16(): 2, pa.int32(): 3, pa.int64(): 4}


@dataclass(frozen=True)
class Change:
    """One difference between the incoming schema and the destination table.

    ``source_type`` is the type the destination column must take: the incoming type,
    or for a widening the smallest type that holds both the column's values and the
    incoming ones (``decimal(10,2)`` taking ``decimal(8,4)`` becomes ``decimal(12,4)``).
    ``note`` says why an incompatible change cannot be applied, when there is more to say.
    """

    kind: ChangeKind
    column: str
    source_type: pa.DataType | None
    target_type: pa.DataType | None
    note: str = ""

    def describe(self) -> str:
        """A short human line, e.g. ``+ discount decimal(15,2)``.

        >>> Change("widen", "amount", pa.decimal128(12, 4), pa.decimal128(10, 2)).describe()
        '~ amount decimal(10,2) -> decimal(12,4)'
        """
        if self.kind == "add_column":
            return f"+ {self.column} {spec_name(self.source_type)}"
        if self.kind == "missing_in_source":
            return f"- {self.column} {spec_name(self.target_type)} (not in source; loaded as NULL)"
        note = f" ({self.note})" if self.note else ""
        return f"~ {self.column} {spec_name(self.target_type)} -> {spec_name(self.source_type)}{note}"


def spec_name(t: pa.DataType | None) -> str:
    """The Conduit type name of an Arrow type (``bigint``, ``decimal(15,2)``, ``text``...).

    >>> spec_name(pa.decimal128(15, 2)), spec_name(pa.large_string()), spec_name(pa.timestamp("us", "UTC"))
    ('decimal(15,2)', 'text', 'timestamptz')
    """
    if t is None:
        return "?"
    t = without_views(t)
    names = {pa.bool_(): "boolean", pa.int16(): "smallint", pa.int32(): "integer", pa.int64(): "bigint", pa.float32(): "real", pa.float64(): "double", pa.date32(): "date", pa.binary(): "binary"}
    if t in names:
        return names[t]
    if pa.types.is_decimal(t):
        return f"decimal({t.precision},{t.scale})"
    if is_text(t):
        return "text"
    if pa.types.is_timestamp(t):
        return "timestamptz" if t.tz else "timestamp"
    if pa.types.is_time(t):
        return "time"
    return str(t)


def without_views(t: pa.DataType) -> pa.DataType:
    """``t`` with Arrow view types replaced by their large counterparts, nested ones too.

    Polars exports ``string_view`` to destinations that take it; names recorded or shown
    stay those of the default export.

    >>> without_views(pa.list_(pa.string_view()))
    ListType(list<item: large_string>)
    """
    if pa.types.is_string_view(t):
        return pa.large_string()
    if pa.types.is_binary_view(t):
        return pa.large_binary()
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        inner = t.value_field.with_type(without_views(t.value_type))
        return pa.large_list(inner) if pa.types.is_large_list(t) else pa.list_(inner, t.list_size) if pa.types.is_fixed_size_list(t) else pa.list_(inner)
    if pa.types.is_struct(t):
        return pa.struct([f.with_type(without_views(f.type)) for f in t])
    if pa.types.is_dictionary(t):
        return pa.dictionary(t.index_type, without_views(t.value_type), t.ordered)
    return t


def is_text(t: pa.DataType) -> bool:
    """``string``, ``large_string`` or ``string_view``."""
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def is_bytes(t: pa.DataType) -> bool:
    """``binary``, ``large_binary`` or ``binary_view``."""
    return pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t)


def is_list(t: pa.DataType) -> bool:
    """Any list flavour: ``list``, ``large_list``, ``fixed_size_list``, the list views."""
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_list_view(t) or pa.types.is_large_list_view(t)


def is_nested(t: pa.DataType) -> bool:
    """A list, struct or map (loaded as JSON where the destination has no such type)."""
    return is_list(t) or pa.types.is_struct(t) or pa.types.is_map(t)


def is_json(t: pa.DataType) -> bool:
    """The ``arrow.json`` extension type (a JSON column read back from a destination)."""
    return isinstance(t, pa.BaseExtensionType) and t.extension_name == "arrow.json"


def same_type(a: pa.DataType, b: pa.DataType) -> bool:
    """Equal up to string / binary / list flavours (e.g. utf8 / large_utf8 / string_view), timestamp zone names and time units.

    Times of any unit are one type: Polars holds every time in nanoseconds while
    PostgreSQL and DuckDB store microseconds, and a load casts to the destination's unit
    whether it creates the table or appends to it. Lists and structs compare their
    items and fields the same way.

    >>> same_type(pa.string_view(), pa.large_string()), same_type(pa.binary(), pa.large_binary()), same_type(pa.binary(), pa.string())
    (True, True, False)
    >>> same_type(pa.time64("ns"), pa.time64("us")), same_type(pa.list_(pa.string()), pa.large_list(pa.large_string()))
    (True, True)
    >>> same_type(pa.struct([("k", pa.string())]), pa.struct([("k", pa.large_string())])), same_type(pa.struct([("k", pa.string())]), pa.struct([("v", pa.string())]))
    (True, False)
    """
    if (is_text(a) and is_text(b)) or (is_bytes(a) and is_bytes(b)) or (pa.types.is_time(a) and pa.types.is_time(b)):
        return True
    if is_list(a) and is_list(b):
        return same_type(a.value_type, b.value_type)
    if pa.types.is_struct(a) and pa.types.is_struct(b):
        return a.num_fields == b.num_fields and all(a.field(i).name == b.field(i).name and same_type(a.field(i).type, b.field(i).type) for i in range(a.num_fields))
    if pa.types.is_timestamp(a) and pa.types.is_timestamp(b):
        return a.unit == b.unit and (a.tz is None) == (b.tz is None)
    return a == b


def widened(src: pa.DataType, dst: pa.DataType) -> pa.DataType | None:
    """The type a destination column ``dst`` can be widened to, losslessly, to also hold ``src``; None if there is none.

    Integers and floats widen to the wider of the two. Decimals keep every integer digit
    and every fractional digit of both: integer digits ``max(p1-s1, p2-s2)``, scale
    ``max(s1, s2)``, precision their sum (which may pass 38: the caller checks the
    destination's limit).

    >>> widened(pa.decimal128(8, 4), pa.decimal128(10, 2)), widened(pa.decimal128(12, 0), pa.decimal128(6, 4))
    (Decimal128Type(decimal128(12, 4)), Decimal128Type(decimal128(16, 4)))
    >>> widened(pa.int64(), pa.int32()), widened(pa.string(), pa.int32())
    (DataType(int64), None)
    """
    if src in _INT_RANK and dst in _INT_RANK:
        return src if _INT_RANK[src] > _INT_RANK[dst] else None
    if pa.types.is_floating(src) and pa.types.is_floating(dst):
        return src if src.bit_width > dst.bit_width else None
    if pa.types.is_decimal(src) and pa.types.is_decimal(dst):
        scale = max(src.scale, dst.scale)
        precision = max(src.precision - src.scale, dst.precision - dst.scale) + scale
        return pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)
    return None


def fits_into(src: pa.DataType, dst: pa.DataType) -> bool:
    """Whether values of ``src`` load into an existing ``dst`` column without loss.

    >>> fits_into(pa.large_binary(), pa.binary()), fits_into(pa.int32(), pa.int64()), fits_into(pa.string(), pa.binary())
    (True, True, False)
    >>> fits_into(pa.list_(pa.int64()), pa.json_(pa.string()))
    True
    """
    if same_type(src, dst):
        return True
    if is_json(dst):  # a JSON column takes nested values and text (the destination parses it)
        return is_json(src) or is_nested(src) or is_text(src)
    if src in _INT_RANK and dst in _INT_RANK:
        return _INT_RANK[src] <= _INT_RANK[dst]
    if pa.types.is_decimal(src) and pa.types.is_decimal(dst):
        return src.scale <= dst.scale and src.precision - src.scale <= dst.precision - dst.scale
    if src in _INT_RANK and pa.types.is_decimal(dst):
        return dst.precision - dst.scale >= 19 or src != pa.int64()
    if pa.types.is_floating(src) and pa.types.is_floating(dst):
        return src.bit_width <= dst.bit_width
    return pa.types.is_null(src)


def diff(source: pa.Schema, target: pa.Schema, max_decimal_precision: int = 38) -> list[Change]:
    """Changes needed for ``target`` (an existing table) to take rows of ``source``.

    A decimal column whose widening would need more than ``max_decimal_precision``
    digits (the destination's limit) is an incompatible change, never a lossy cast.

    >>> diff(pa.schema([("a", pa.decimal128(10, 4))]), pa.schema([("a", pa.decimal128(38, 0))]))[0].describe()
    "~ a decimal(38,0) -> decimal(42,4) (needs 42 digits; this destination's decimals hold 38)"
    """
    tgt = {f.name: f.type for f in target}
    src = {f.name: f.type for f in source}
    changes: list[Change] = []
    for name, stype in src.items():
        if name not in tgt:
            changes.append(Change("add_column", name, stype, None))
        elif not fits_into(stype, tgt[name]):
            wide = widened(stype, tgt[name])
            if wide is None:
                changes.append(Change("incompatible", name, stype, tgt[name]))
            elif pa.types.is_decimal(wide) and wide.precision > max_decimal_precision:
                note = f"needs {wide.precision} digits; this destination's decimals hold {max_decimal_precision}"
                changes.append(Change("incompatible", name, wide, tgt[name], note))
            else:
                changes.append(Change("widen", name, wide, tgt[name]))
    changes += [Change("missing_in_source", n, None, t) for n, t in tgt.items() if n not in src]
    return changes


def decide(changes: list[Change], mode: str, table: str, ddl: Callable[[Change], str | None]) -> tuple[list[Change], list[str]]:
    """Apply the schema-evolution mode: return (changes to apply, columns to drop from the load).

    Raises :class:`SchemaMismatch` with the diff and the DDL that would fix it when the
    mode forbids a change. ``ddl`` renders the destination's statement for a change.
    """
    blocking = [c for c in changes if c.kind != "missing_in_source"]
    if not blocking:
        return [], []
    incompatible = [c for c in blocking if c.kind == "incompatible"]
    if mode == "auto" and not incompatible:
        return blocking, []
    if mode == "warn" and not [c for c in blocking if c.kind == "widen"] and not incompatible:
        return [], [c.column for c in blocking]
    lines = "; ".join(c.describe() for c in blocking)
    fix = " ".join(filter(None, map(ddl, blocking))) or "(no lossless DDL; change the column or use write_mode: replace)"
    msg = f"schema of {table} differs ({mode} mode): {lines}. To accept: {fix}"
    raise SchemaMismatch(msg)
