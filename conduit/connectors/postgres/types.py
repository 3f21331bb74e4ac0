"""Arrow <-> PostgreSQL types for the PostgreSQL connector.

Binary COPY (encoded by pgpq, :mod:`conduit.connectors.postgres.copy_encoder`) needs the exact Arrow type for each column of the
table it writes into, so every staging table is created by Conduit from the load's
Arrow schema, and every batch is cast to the matching *staging* Arrow type first.
JSON (declared ``json`` columns, structs, lists, maps) is staged as JSON text and
becomes ``jsonb`` in SQL; decimals keep their precision and scale.

Examples
--------
>>> import pyarrow as pa
>>> pg_column(pa.decimal128(15, 2))
PgColumn(final='numeric(15,2)', stage='numeric(15,2)', arrow=Decimal128Type(decimal128(15, 2)))
>>> pg_column(pa.struct([("a", pa.int64())])).final
'jsonb'
>>> numeric_type(983046)
Decimal128Type(decimal128(15, 2))
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from conduit.schema import is_bytes, is_nested, is_text

UNCONSTRAINED_NUMERIC = pa.decimal128(38, 10)  # what a numeric without (p,s) reads as


@dataclass(frozen=True)
class PgColumn:
    """How one Arrow column lands: final column type, staged column type, Arrow type to COPY."""

    final: str
    stage: str
    arrow: pa.DataType


PG_TYPE = b"conduit.pg_type"
"""Arrow field metadata key: the PostgreSQL source column's type, as ``format_type()`` spells it."""


def pg_column(t: pa.DataType, json: bool = False, pg_type: str | None = None) -> PgColumn:
    """The PostgreSQL types for Arrow type ``t`` (``json``: a column declared ``json``).

    ``pg_type``, a PostgreSQL source column's type, is the final type instead: the value is
    staged as the Arrow type maps (a list as the array's text form) and cast in SQL.

    >>> pg_column(pa.string(), pg_type="uuid")
    PgColumn(final='uuid', stage='text', arrow=DataType(string))
    >>> pg_column(pa.list_(pa.int32()), pg_type="integer[]").stage
    'text'
    """
    col = _pg_column(t, json)
    if pg_type is None or catalog_name(col.final) == pg_type:
        return col
    if (pa.types.is_list(t) or pa.types.is_large_list(t)) and pg_type.endswith("[]"):
        return PgColumn(pg_type, "text", pa.string())
    return PgColumn(pg_type, col.stage, col.arrow)


def _pg_column(t: pa.DataType, json: bool = False) -> PgColumn:
    if isinstance(t, pa.BaseExtensionType):
        if t.extension_name == "arrow.json":
            return PgColumn("jsonb", "text", pa.string())
        if t.extension_name == "arrow.uuid":
            return PgColumn("uuid", "uuid", t)
        return _pg_column(t.storage_type, json)
    if pa.types.is_dictionary(t):
        return _pg_column(t.value_type, json)
    if json or is_nested(t):
        return PgColumn("jsonb", "text", pa.string())
    simple = _simple(t)
    if simple is not None:
        return PgColumn(simple[0], simple[0], simple[1])
    if pa.types.is_decimal(t):
        name = f"numeric({t.precision},{t.scale})"
        if t.precision <= 38:
            return PgColumn(name, name, pa.decimal128(t.precision, t.scale))
        return PgColumn(name, "text", pa.string())
    if pa.types.is_timestamp(t):
        return PgColumn("timestamptz" if t.tz else "timestamp", "timestamptz" if t.tz else "timestamp", pa.timestamp("us", t.tz))
    return PgColumn("text", "text", pa.string())


def _simple(t: pa.DataType) -> tuple[str, pa.DataType] | None:
    table: list[tuple[object, str, pa.DataType]] = [
        (pa.types.is_boolean, "boolean", pa.bool_()),
        (lambda x: x in (pa.int8(), pa.uint8(), pa.int16()), "smallint", pa.int16()),
        (lambda x: x in (pa.uint16(), pa.int32()), "integer", pa.int32()),
        (lambda x: x in (pa.uint32(), pa.int64()), "bigint", pa.int64()),
        (lambda x: x == pa.uint64(), "numeric(20,0)", pa.decimal128(20, 0)),
        (lambda x: x in (pa.float16(), pa.float32()), "real", pa.float32()),
        (lambda x: x == pa.float64(), "double precision", pa.float64()),
        (is_text, "text", t),
        (lambda x: is_bytes(x) or pa.types.is_fixed_size_binary(x), "bytea", pa.binary()),
        (pa.types.is_date, "date", pa.date32()),
        (pa.types.is_time, "time", pa.time64("us")),
        (pa.types.is_duration, "interval", pa.duration("us")),
        (pa.types.is_interval, "interval", pa.month_day_nano_interval()),
        (pa.types.is_null, "text", pa.string()),
    ]
    for test, name, arrow in table:
        if test(t):  # type: ignore[operator]
            if name == "bytea" and pa.types.is_binary(t):
                return name, t
            return name, arrow
    return None


_CATALOG_NAMES = {"timestamptz": "timestamp with time zone", "timestamp": "timestamp without time zone", "time": "time without time zone"}


def catalog_name(type_name: str) -> str:
    """How ``format_type()`` spells a type this module names (``timestamptz`` -> ``timestamp with time zone``).

    >>> catalog_name("timestamptz"), catalog_name("numeric(15,2)")
    ('timestamp with time zone', 'numeric(15,2)')
    """
    return _CATALOG_NAMES.get(type_name, type_name)


def columns_for(schema: pa.Schema, json_columns: list[str]) -> dict[str, PgColumn]:
    """Per field of ``schema``: its :class:`PgColumn` (a source column's PostgreSQL type kept, see :func:`pg_column`)."""
    return {f.name: pg_column(f.type, f.name in json_columns, source_type(f)) for f in schema}


def source_type(f: pa.Field) -> str | None:
    """The PostgreSQL source column type recorded in ``f``'s metadata, if any."""
    value = (f.metadata or {}).get(PG_TYPE)
    return value.decode() if value is not None else None


def keep_existing_types(schema: pa.Schema, fetch: Callable[[str, list[object]], list[tuple[Any, ...]]]) -> pa.Schema:
    """``schema`` without the source types the target database does not have (an enum of the source only); those land as the Arrow type maps.

    ``fetch(sql, params)`` runs a query on the target.
    """
    names = sorted({t for f in schema if (t := source_type(f)) is not None})
    if not names:
        return schema
    row = fetch("SELECT " + ", ".join(f"to_regtype(${i + 1}) IS NOT NULL" for i in range(len(names))), list(names))[0]
    missing = {n for n, ok in zip(names, row, strict=True) if not ok}
    return pa.schema([f.with_metadata({k: v for k, v in f.metadata.items() if k != PG_TYPE}) if source_type(f) in missing else f for f in schema], schema.metadata)


def stage_schema(schema: pa.Schema, cols: dict[str, PgColumn]) -> pa.Schema:
    """The Arrow schema batches are cast to before binary COPY."""
    return pa.schema([pa.field(f.name, cols[f.name].arrow, f.nullable) for f in schema])


def to_json_text(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """JSON text of each value of a nested (or JSON extension) array; nulls stay null."""
    import polars as pl

    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if isinstance(arr.type, pa.BaseExtensionType):
        return arr.storage.cast(pa.string())
    if is_text(arr.type):
        return arr.cast(pa.string())
    if (keyed := text_map_keys(arr.type)) != arr.type:
        arr = arr.cast(keyed)  # JSON object keys are text: map<int64, v> {1: x} becomes {"1": x}
    series = pl.Series("v", arr)
    df = pl.DataFrame([series])
    encoded = pl.when(pl.col("v").is_null()).then(None).otherwise(pl.struct("v").struct.json_encode().str.slice(5).str.head(-1))
    return df.select(encoded.alias("v")).get_column("v").to_arrow().cast(pa.string())


def to_array_text(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """PostgreSQL's text form of each list (``{"1","2",NULL}``), which casts to any array type; nulls stay null.

    >>> to_array_text(pa.array([[1, None], [], None])).to_pylist()
    ['{"1",NULL}', '{}', None]
    >>> to_array_text(pa.array([['a"b', "c,d"]])).to_pylist()[0] == '{"a' + chr(92) + '"b","c,d"}'
    True
    """
    import polars as pl

    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    item = pl.element().cast(pl.String).str.replace_all("\\", "\\\\", literal=True).str.replace_all('"', '\\"', literal=True)
    quoted = pl.when(pl.element().is_null()).then(pl.lit("NULL")).otherwise(pl.lit('"') + item + pl.lit('"'))
    text = pl.lit("{") + pl.col("v").list.eval(quoted).list.join(",") + pl.lit("}")
    df = pl.DataFrame([pl.Series("v", arr)])
    return df.select(pl.when(pl.col("v").is_null()).then(None).otherwise(text).alias("v")).get_column("v").to_arrow().cast(pa.string())


def text_map_keys(t: pa.DataType) -> pa.DataType:
    """``t`` with every map's keys as strings, nested ones too (JSON object keys are text).

    >>> text_map_keys(pa.list_(pa.map_(pa.int64(), pa.float64())))
    ListType(list<item: map<string, double>>)
    """
    if pa.types.is_map(t):
        return pa.map_(pa.string() if not is_text(t.key_type) else t.key_type, text_map_keys(t.item_type))
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        inner = t.value_field.with_type(text_map_keys(t.value_type))
        return pa.large_list(inner) if pa.types.is_large_list(t) else pa.list_(inner)
    if pa.types.is_struct(t):
        return pa.struct([f.with_type(text_map_keys(f.type)) for f in t])
    return t


def cast_batch(batch: pa.RecordBatch, target: pa.Schema, cols: dict[str, PgColumn]) -> pa.RecordBatch:
    """``batch`` with every column cast to the staging Arrow type (JSON encoded as text)."""
    arrays = []
    for f in target:
        arr = batch.column(f.name)
        if arr.type == f.type:
            arrays.append(arr)
        elif cols[f.name].stage == "text" and cols[f.name].final != "text":
            if cols[f.name].final == "jsonb":
                arrays.append(to_json_text(arr))
            elif cols[f.name].final.endswith("[]") and is_nested(arr.type):
                arrays.append(to_array_text(arr))
            else:
                arrays.append(arr.cast(pa.string()))
        elif pa.types.is_dictionary(arr.type):
            arrays.append(pc.cast(arr.dictionary_decode(), f.type, safe=not pa.types.is_timestamp(f.type)))
        else:
            arrays.append(pc.cast(arr, f.type, safe=not pa.types.is_timestamp(f.type)))
    return pa.RecordBatch.from_arrays(arrays, schema=target)


# --- reading: PostgreSQL catalog types and ADBC result columns -> Arrow --------------

_DECL = re.compile(r"^(?:numeric|decimal)\((\d+),(\d+)\)$")
_BY_NAME: dict[str, pa.DataType] = {
    "smallint": pa.int16(),
    "integer": pa.int32(),
    "bigint": pa.int64(),
    "real": pa.float32(),
    "double precision": pa.float64(),
    "boolean": pa.bool_(),
    "text": pa.string(),
    "date": pa.date32(),
    "bytea": pa.binary(),
    "timestamp without time zone": pa.timestamp("us"),
    "timestamp with time zone": pa.timestamp("us", "UTC"),
    "time without time zone": pa.time64("us"),
    "interval": pa.string(),  # a PostgreSQL source reads it as its text form (Polars has no month-day-nano type)
    "jsonb": pa.json_(pa.string()),
    "json": pa.json_(pa.string()),
}


TABLE_TYPES = """SELECT a.attname,
  format_type(COALESCE(NULLIF(t.typbasetype, 0), a.atttypid), CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END) || repeat('[]', greatest(a.attndims - 1, 0)),
  a.attnotnull
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_type t ON t.oid = a.atttypid
WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"""
"""(column, type, not null) of a table as :func:`arrow_for_catalog` reads them: a domain as its base type, an array declared with several dimensions with them (``integer[][]``)."""

_LIST_ELEMENTS = {"smallint", "integer", "bigint", "real", "double precision", "boolean", "text", "character varying", "character", "name"}


def arrow_for_catalog(type_name: str) -> pa.DataType:
    """Arrow type of a column from ``format_type()`` (for schema diffs).

    An unconstrained ``numeric`` takes any decimal, so it reads as decimal256(76,38).
    """
    name = type_name.strip().lower()
    if name in _BY_NAME:
        return _BY_NAME[name]
    if m := _DECL.match(name.replace(" ", "")):
        return pa.decimal128(int(m[1]), int(m[2])) if int(m[1]) <= 38 else pa.decimal256(int(m[1]), int(m[2]))
    if name in ("numeric", "decimal"):
        return pa.decimal256(76, 38)
    if name == "money":
        return UNCONSTRAINED_NUMERIC  # what a PostgreSQL source reads money as (its amount, ::numeric)
    if name.endswith("[]") and re.sub(r"\(.*\)", "", name[:-2]) in _LIST_ELEMENTS:
        return pa.list_(arrow_for_catalog(name[:-2]))  # what a PostgreSQL source reads such an array as
    return pa.string()


def numeric_type(typmod: int) -> pa.DataType:
    """decimal(p,s) for a ``numeric`` typmod; -1 (no precision) -> UNCONSTRAINED_NUMERIC."""
    if typmod < 4:
        return UNCONSTRAINED_NUMERIC
    precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF
    return pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)


def readable_schema(schema: pa.Schema) -> pa.Schema:
    """The schema :func:`readable` produces for ADBC result ``schema`` (field metadata kept)."""
    return pa.schema([pa.field(f.name, _readable_type(f), f.nullable, f.metadata) for f in schema])


def _readable_type(f: pa.Field) -> pa.DataType:
    """The plain Arrow type of an ADBC result column; a column ADBC hands over as the server's binary wire format is an error naming it and its type.

    The source casts such columns in SQL first (:mod:`conduit.connectors.postgres.source_types`),
    so this only happens when it could not (a query with two columns of one name).
    """
    from conduit.errors import SourceError

    t = f.type
    meta = f.metadata or {}
    pg_type = (meta.get(PG_TYPE) or meta.get(b"POSTGRESQL:type") or b"?").decode()
    if isinstance(t, pa.BaseExtensionType):
        if getattr(t, "type_name", None) == "numeric":
            return numeric_type(int(meta.get(b"POSTGRESQL:typmod", b"-1")))
        if t.extension_name == "arrow.opaque" and is_bytes(t.storage_type):
            msg = f"column {f.name} ({pg_type}): the driver reads this type as binary; cast it in the query ({f.name}::text)"
            raise SourceError(msg)
        return pa.string()
    if pa.types.is_interval(t):
        msg = f"column {f.name} ({pg_type}): interval columns cannot be read as Arrow; cast them in the query ({f.name}::text)"
        raise SourceError(msg)
    return t


def readable(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Turn ADBC's opaque/extension columns into plain Arrow (numeric -> decimal(p,s))."""
    arrays = []
    for f, arr in zip(schema, batch.columns, strict=True):
        if arr.type == f.type:
            arrays.append(arr)
            continue
        if isinstance(arr.type, pa.BaseExtensionType):
            storage = arr.storage
            if arr.type.extension_name == "arrow.uuid":
                import polars as pl

                hexed = pl.Series(storage).bin.encode("hex")
                parts = [hexed.str.slice(a, b - a) for a, b in ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32))]
                arrays.append(pl.select(pl.concat_str([p for p in parts], separator="-")).to_series().to_arrow().cast(pa.string()))
                continue
            arr = storage
        if pa.types.is_decimal(f.type):
            arrays.append(_to_decimal(arr, f))
        else:
            arrays.append(arr.cast(f.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _to_decimal(arr: pa.Array, f: pa.Field) -> pa.Array:
    from conduit.errors import SourceError

    special = pc.is_in(arr, pa.array(["NaN", "Infinity", "-Infinity"]))
    if pc.any(special).as_py():
        msg = f"column {f.name}: numeric NaN/Infinity cannot be a decimal; filter or cast it in the query"
        raise SourceError(msg)
    try:
        return pc.cast(arr, f.type)
    except pa.ArrowInvalid:
        msg = f"column {f.name}: a numeric value does not fit {f.type} (numeric without precision reads as decimal(38,10)); cast it in the query, e.g. {f.name}::numeric(38,4)"
        raise SourceError(msg) from None
