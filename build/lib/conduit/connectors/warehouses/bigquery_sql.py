"""BigQuery SQL text and schemas: Arrow <-> BigQuery types and the publish statements.

Pure functions (no client), unit-tested against golden files.

Examples
--------
>>> import pyarrow as pa
>>> field_type(pa.decimal128(15, 2)), field_type(pa.decimal128(38, 12)), field_type(pa.timestamp("us")), field_type(pa.timestamp("us", "UTC"))
('NUMERIC', 'BIGNUMERIC', 'DATETIME', 'TIMESTAMP')
>>> quote("order id")
'`order id`'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conduit.errors import DestinationError

if TYPE_CHECKING:
    import pyarrow as pa
    from google.cloud import bigquery


def quote(identifier: str) -> str:
    """A backtick-quoted BigQuery identifier (path parts joined by the caller)."""
    return "`" + identifier.replace("\\", "\\\\").replace("`", "\\`") + "`"


def field_type(t: pa.DataType, json: bool = False) -> str:
    """The BigQuery type of an Arrow type (for a list: of its items; REPEATED is the mode)."""
    import pyarrow as pa

    from conduit.schema import is_bytes, is_text

    if json:
        return "JSON"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return field_type(t.value_type)
    if pa.types.is_struct(t):
        return "RECORD"
    if pa.types.is_boolean(t):
        return "BOOL"
    if pa.types.is_integer(t):
        return "NUMERIC" if t == pa.uint64() else "INT64"
    if pa.types.is_floating(t):
        return "FLOAT64"
    if pa.types.is_decimal(t):
        if t.scale <= 9 and t.precision - t.scale <= 29:
            return "NUMERIC"
        if t.scale <= 38 and t.precision - t.scale <= 38:
            return "BIGNUMERIC"
        msg = f"decimal({t.precision},{t.scale}) does not fit BigQuery's BIGNUMERIC"
        raise DestinationError(msg)
    if is_text(t) or pa.types.is_null(t):
        return "STRING"
    if is_bytes(t) or pa.types.is_fixed_size_binary(t):
        return "BYTES"
    if pa.types.is_date(t):
        return "DATE"
    if pa.types.is_time(t):
        return "TIME"
    if pa.types.is_timestamp(t):
        return "TIMESTAMP" if t.tz else "DATETIME"
    msg = f"Arrow type {t} has no BigQuery column type"
    raise DestinationError(msg)


def schema_field(f: pa.Field, json_columns: set[str] | None = None, stage: bool = False) -> bigquery.SchemaField:
    """The ``SchemaField`` of an Arrow field; JSON columns are STRING while staged."""
    import pyarrow as pa
    from google.cloud import bigquery

    json = f.name in (json_columns or set())
    t = f.type
    mode = "NULLABLE"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        mode, t = "REPEATED", t.value_type
    kind = "STRING" if json and stage else field_type(t, json)
    sub = [schema_field(c) for c in t] if pa.types.is_struct(t) else ()
    params: dict[str, Any] = {}
    if kind in ("NUMERIC", "BIGNUMERIC") and pa.types.is_decimal(t):
        params = {"precision": t.precision, "scale": t.scale}
    return bigquery.SchemaField(f.name, kind, mode=mode, fields=sub, **params)


def arrow_type(field: bigquery.SchemaField) -> pa.DataType:
    """The Arrow type of an existing BigQuery ``SchemaField``."""
    import pyarrow as pa

    kind = field.field_type.upper()
    if kind in ("RECORD", "STRUCT"):
        t: pa.DataType = pa.struct([pa.field(f.name, arrow_type(f)) for f in field.fields])
    elif kind in ("NUMERIC", "BIGNUMERIC", "BIGDECIMAL", "DECIMAL"):
        big = kind.startswith("BIG")
        p, s = field.precision or (76 if big else 38), field.scale if field.scale is not None else (38 if big else 9)
        t = pa.decimal128(p, s) if p <= 38 else pa.decimal256(p, s)
    else:
        simple = {
            "INT64": pa.int64(), "INTEGER": pa.int64(), "FLOAT64": pa.float64(), "FLOAT": pa.float64(), "BOOL": pa.bool_(), "BOOLEAN": pa.bool_(),
            "BYTES": pa.binary(), "DATE": pa.date32(), "TIME": pa.time64("us"), "DATETIME": pa.timestamp("us"), "TIMESTAMP": pa.timestamp("us", "UTC"),
        }  # fmt: skip
        t = simple.get(kind, pa.string())  # STRING, JSON, GEOGRAPHY...
    return pa.list_(t) if field.mode == "REPEATED" else t


def bq_ready(t: pa.DataType) -> pa.DataType:
    """The Arrow type written to Parquet for BigQuery (it takes micro-, not nanoseconds)."""
    import pyarrow as pa

    if pa.types.is_timestamp(t) and t.unit == "ns":
        return pa.timestamp("us", t.tz)
    if pa.types.is_time(t) and t.unit == "ns":
        return pa.time64("us")
    return t


def projection(columns: list[str], json_columns: set[str]) -> str:
    """The publish select list: staged JSON text parsed into JSON."""
    return ", ".join(f"PARSE_JSON({quote(c)}) AS {quote(c)}" if c in json_columns else quote(c) for c in columns)


def union(tables: list[str]) -> str:
    """All chunk tables as one relation."""
    return " UNION ALL ".join(f"SELECT * FROM {t}" for t in tables)


def create_as(target: str, source: str, columns: list[str], json_columns: set[str], replace: bool) -> str:
    """Create (or, for replace, atomically replace) the target from the staged rows."""
    verb = "CREATE OR REPLACE TABLE" if replace else "CREATE TABLE"
    return f"{verb} {target} AS SELECT {projection(columns, json_columns)} FROM ({source})"


def insert(target: str, source: str, columns: list[str], json_columns: set[str]) -> str:
    """Append the staged rows by column name."""
    return f"INSERT INTO {target} ({', '.join(map(quote, columns))}) SELECT {projection(columns, json_columns)} FROM ({source})"


def dedup(source: str, keys: list[str], seq: str) -> str:
    """The staged rows with one row per key: the largest ``seq`` wins."""
    return f"SELECT * FROM ({source}) WHERE TRUE QUALIFY ROW_NUMBER() OVER (PARTITION BY {', '.join(map(quote, keys))} ORDER BY {quote(seq)} DESC) = 1"


def merge(target: str, source: str, columns: list[str], keys: list[str], json_columns: set[str], seq: str) -> str:
    """Upsert the deduplicated staged rows on ``keys``."""
    on = " AND ".join(f"T.{quote(k)} = S.{quote(k)}" for k in keys)
    updates = ", ".join(f"{quote(c)} = S.{quote(c)}" for c in columns if c not in keys)
    matched = f" WHEN MATCHED THEN UPDATE SET {updates}" if updates else ""
    cols = ", ".join(map(quote, columns))
    values = ", ".join(f"S.{quote(c)}" for c in columns)
    return f"MERGE {target} T USING (SELECT {projection(columns, json_columns)} FROM ({dedup(source, keys, seq)})) S ON {on}{matched} WHEN NOT MATCHED THEN INSERT ({cols}) VALUES ({values})"
