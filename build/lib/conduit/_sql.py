"""SQL text helpers shared by the SQL destinations: identifier quoting and table names.

Every identifier Conduit puts in SQL goes through :func:`quote`, so a table or column
name from a file can never inject SQL.

Examples
--------
>>> quote('we"ird')
'"we""ird"'
>>> qualified("public.customers")
'"public"."customers"'
>>> split_table("orders", default_schema="main")
('main', 'orders')
"""

from __future__ import annotations


def quote(identifier: str) -> str:
    """Double-quote an identifier, doubling embedded quotes."""
    return '"' + identifier.replace('"', '""') + '"'


def split_table(table: str, default_schema: str) -> tuple[str, str]:
    """``schema.table`` -> (schema, table); a bare name gets ``default_schema``."""
    schema, dot, name = table.rpartition(".")
    return (schema if dot else default_schema), name


def qualified(table: str, default_schema: str | None = None) -> str:
    """The quoted, schema-qualified name of ``table``."""
    schema, name = split_table(table, default_schema or "")
    return f"{quote(schema)}.{quote(name)}" if schema else quote(name)


def column_list(names: list[str]) -> str:
    """Quoted, comma-separated column names."""
    return ", ".join(quote(n) for n in names)


def stage_name(load_id: str) -> str:
    """The staging table name of a load (same schema as the target)."""
    return f"_conduit_stage_{load_id}".replace("-", "_")
