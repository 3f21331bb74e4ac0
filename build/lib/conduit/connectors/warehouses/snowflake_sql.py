"""Snowflake SQL text: identifiers, Arrow -> Snowflake types, and the load/publish statements.

Pure functions (no connection), so the generated SQL is unit-tested against golden
files, including the statements the local stand-in cannot run (``SWAP WITH``).

Identifiers follow Snowflake's own rule for unquoted names: a name that is a plain
lower-case identifier (``order_id``) is stored upper-case (``ORDER_ID``), so people can
query it unquoted; anything else (``Order Id``, ``camelCase``) is kept exactly, quoted.
Reading back, plain upper-case names are shown lower-case again.

Examples
--------
>>> ident("order_id"), ident("Order Id")
('"ORDER_ID"', '"Order Id"')
>>> arrow_name("ORDER_ID"), arrow_name("Order Id")
('order_id', 'Order Id')
>>> import pyarrow as pa
>>> sql_type(pa.decimal128(15, 2)), sql_type(pa.timestamp("us", "UTC")), sql_type(pa.list_(pa.int64()))
('NUMBER(15,2)', 'TIMESTAMP_TZ(6)', 'VARIANT')
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from conduit.errors import DestinationError

if TYPE_CHECKING:
    import pyarrow as pa

_PLAIN_LOWER = re.compile(r"^[a-z_][a-z0-9_$]*$")
_PLAIN_UPPER = re.compile(r"^[A-Z_][A-Z0-9_$]*$")
_TS_DIGITS = {"s": 0, "ms": 3, "us": 6, "ns": 9}
FILE_FORMAT = "FILE_FORMAT=(TYPE=PARQUET USE_LOGICAL_TYPE=TRUE BINARY_AS_TEXT=FALSE)"


def name(identifier: str) -> str:
    """Snowflake's stored name for ``identifier`` (unquoted form)."""
    return identifier.upper() if _PLAIN_LOWER.match(identifier) else identifier


def ident(identifier: str) -> str:
    """The quoted Snowflake identifier for a column or table name."""
    return '"' + name(identifier).replace('"', '""') + '"'


def arrow_name(stored: str) -> str:
    """The name Conduit shows for a stored Snowflake name (inverse of :func:`name`)."""
    return stored.lower() if _PLAIN_UPPER.match(stored) else stored


def table_ref(table: str, default_schema: str, database: str | None = None) -> str:
    """``"DB"."SCHEMA"."TABLE"`` for ``schema.table`` or a bare ``table``."""
    parts = table.split(".")
    if len(parts) == 1:
        parts = [default_schema, *parts]
    if len(parts) == 2 and database:
        parts = [database, *parts]
    return ".".join(ident(p) for p in parts)


def sql_type(t: pa.DataType, json: bool = False) -> str:
    """The Snowflake column type for an Arrow type (``json`` marks a JSON text column)."""
    import pyarrow as pa

    from conduit.schema import is_bytes, is_text

    if json or pa.types.is_nested(t):
        return "VARIANT"
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    if pa.types.is_integer(t):
        digits = {8: 3, 16: 5, 32: 10, 64: 19}[t.bit_width] + (1 if pa.types.is_unsigned_integer(t) and t.bit_width == 64 else 0)
        return f"NUMBER({digits},0)"
    if pa.types.is_floating(t):
        return "FLOAT"
    if pa.types.is_decimal(t):
        if t.precision > 38:
            msg = f"decimal({t.precision},{t.scale}) does not fit Snowflake's NUMBER (precision up to 38)"
            raise DestinationError(msg)
        return f"NUMBER({t.precision},{t.scale})"
    if is_text(t) or pa.types.is_null(t):
        return "VARCHAR"
    if is_bytes(t) or pa.types.is_fixed_size_binary(t):
        return "BINARY"
    if pa.types.is_date(t):
        return "DATE"
    if pa.types.is_time(t):
        return f"TIME({_TS_DIGITS[t.unit]})"
    if pa.types.is_timestamp(t):
        return f"TIMESTAMP_{'TZ' if t.tz else 'NTZ'}({_TS_DIGITS[t.unit]})"
    msg = f"Arrow type {t} has no Snowflake column type"
    raise DestinationError(msg)


def arrow_type(data_type: str, precision: int | None, scale: int | None, datetime_precision: int | None) -> pa.DataType:
    """The Arrow type of an existing Snowflake column (from ``information_schema.columns``)."""
    import pyarrow as pa

    dt = data_type.upper()
    unit = {0: "s", 3: "ms", 6: "us", 9: "ns"}.get(int(datetime_precision) if datetime_precision is not None else 6, "us")
    if dt in ("NUMBER", "DECIMAL", "NUMERIC", "INT", "INTEGER", "BIGINT", "FIXED"):
        p, s = int(precision or 38), int(scale or 0)
        return pa.int64() if s == 0 and p <= 18 else pa.decimal128(p, s)
    simple = {"FLOAT": pa.float64(), "REAL": pa.float64(), "DOUBLE": pa.float64(), "BOOLEAN": pa.bool_(), "DATE": pa.date32(), "BINARY": pa.binary()}
    if dt in simple:
        return simple[dt]
    if dt == "TIME":
        return pa.time64("ns") if unit == "ns" else pa.time64("us")
    if dt in ("TIMESTAMP_NTZ", "DATETIME", "TIMESTAMP"):
        return pa.timestamp(unit)
    if dt in ("TIMESTAMP_TZ", "TIMESTAMP_LTZ"):
        return pa.timestamp(unit, "UTC")
    return pa.string()  # TEXT, VARCHAR, VARIANT, OBJECT, ARRAY


def columns_ddl(schema: pa.Schema, json_columns: set[str], stage: bool) -> str:
    """``"C" TYPE, ...``; a staging table keeps JSON text as VARCHAR (parsed on publish)."""
    return ", ".join(f"{ident(f.name)} {'VARCHAR' if stage and f.name in json_columns else sql_type(f.type, f.name in json_columns)}" for f in schema)


def select_list(columns: list[str], json_columns: set[str], prefix: str = "") -> str:
    """The publish projection: JSON text parsed into VARIANT, everything else as is."""
    return ", ".join(f"PARSE_JSON({prefix}{ident(c)}) AS {ident(c)}" if c in json_columns else f"{prefix}{ident(c)}" for c in columns)


def put(path: str, stage: str, prefix: str) -> str:
    """Upload one local file to ``@stage/prefix/`` (already compressed Parquet)."""
    local = path.replace("\\", "/").replace("'", "\\'")
    return f"PUT 'file://{local}' @{stage}/{prefix}/ AUTO_COMPRESS=FALSE OVERWRITE=TRUE PARALLEL=4"


def copy_into(stage_table: str, stage: str, prefix: str) -> str:
    """Load every file under ``@stage/prefix/`` into the staging table; any bad row aborts."""
    return f"COPY INTO {stage_table} FROM @{stage}/{prefix}/ {FILE_FORMAT} MATCH_BY_COLUMN_NAME=CASE_INSENSITIVE ON_ERROR=ABORT_STATEMENT FORCE=TRUE PURGE=TRUE"


def insert_select(target: str, stage_table: str, columns: list[str], json_columns: set[str]) -> str:
    """Append the staged rows (by column name)."""
    return f"INSERT INTO {target} ({', '.join(map(ident, columns))}) SELECT {select_list(columns, json_columns)} FROM {stage_table}"


def merge(target: str, stage_table: str, columns: list[str], keys: list[str], json_columns: set[str], seq: str) -> str:
    """Upsert on ``keys``; of several staged rows per key the one with the largest ``seq`` wins."""
    part = ", ".join(map(ident, keys))
    source = f"SELECT {select_list(columns, json_columns)} FROM {stage_table} QUALIFY ROW_NUMBER() OVER (PARTITION BY {part} ORDER BY {ident(seq)} DESC) = 1"
    on = " AND ".join(f"t.{ident(k)} = s.{ident(k)}" for k in keys)
    updates = ", ".join(f"{ident(c)} = s.{ident(c)}" for c in columns if c not in keys)
    matched = f" WHEN MATCHED THEN UPDATE SET {updates}" if updates else ""
    cols = ", ".join(map(ident, columns))
    values = ", ".join(f"s.{ident(c)}" for c in columns)
    return f"MERGE INTO {target} AS t USING ({source}) AS s ON {on}{matched} WHEN NOT MATCHED THEN INSERT ({cols}) VALUES ({values})"


def replace_statements(target: str, new_table: str, marker: str) -> list[str]:
    """Swap a fully built table in for the target; the marker comment makes a retry detectable."""
    comment = marker.replace("'", "''")
    return [f"COMMENT ON TABLE {new_table} IS '{comment}'", f"ALTER TABLE {target} SWAP WITH {new_table}", f"DROP TABLE IF EXISTS {new_table}"]
