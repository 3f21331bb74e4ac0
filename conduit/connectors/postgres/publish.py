"""The SQL of a PostgreSQL publish: staging table -> target, per write mode.

Pure functions from catalog facts to statements, so the plan can be read and tested
without a server. The destination runs the statements in one transaction together
with its ``_conduit_loads`` row.

Examples
--------
>>> import pyarrow as pa
>>> from conduit.config import ResolvedTable
>>> from conduit.connectors.base import Load
>>> load = Load("r1_t", "r1", "t", "public.t", ResolvedTable(write_mode="append"), pa.schema([("id", pa.int64())]))
>>> [s for s, _ in plan_publish(load, "public", [("id", "bigint", False, "p")], None, "_conduit_stage_r1_t")[0]]
['ALTER TABLE "public"."_conduit_stage_r1_t" RENAME TO "t"']
>>> [s for s, _ in plan_publish(load, "public", [("id", "bigint", False, "u")], [("id", "integer", False, "p")], "_conduit_stage_r1_t")[0]]
['INSERT INTO "public"."t" ("id") SELECT s."id" FROM "public"."_conduit_stage_r1_t" AS s', 'DROP TABLE "public"."_conduit_stage_r1_t"']
"""

from __future__ import annotations

import re
from collections.abc import Callable

from conduit._sql import column_list, qualified, quote, split_table
from conduit.connectors.base import SEQ, Load

Catalog = list[tuple[str, str, bool, str]]
Params = list[object] | Callable[[list[int]], list[object]] | None
"""A statement's parameters: a list, None, or a function of the row counts of the statements before it."""
Statements = list[tuple[str, Params]]


def final_columns(load: Load, stage: Catalog | None) -> list[tuple[str, str, bool]]:
    """(name, final type, not null) of the target a load creates."""
    from conduit.connectors.postgres.types import columns_for

    if load.schema is None:
        return [(c, t, nn) for c, t, nn, _ in stage or [] if c != SEQ]
    cols = columns_for(load.schema, load.json_columns)
    return [(f.name, cols[f.name].final, not f.nullable) for f in load.schema if f.name != SEQ]


def constraint(table: str) -> str:
    """The primary key constraint name of ``table`` (what PostgreSQL itself would pick)."""
    return f"{table[:58]}_pkey"


def create_table(table: str, columns: list[tuple[str, str, bool]], keys: list[str]) -> str:
    """``CREATE TABLE`` with NOT NULL where declared and the primary key."""
    defs = [f"{quote(c)} {t}{' NOT NULL' if nn else ''}" for c, t, nn in columns]
    if keys:
        defs.append(f"CONSTRAINT {quote(constraint(split_table(table, '')[1]))} PRIMARY KEY ({column_list(keys)})")
    return f"CREATE TABLE {table_sql(table)} ({', '.join(defs)})"


def table_sql(table: str) -> str:
    """Quoted ``schema.table`` (the table is already qualified)."""
    return qualified(table)


def _convert(expr: str, target_type: str) -> str:
    """``expr`` (staged as text) as ``target_type``; empty JSON text is NULL."""
    if target_type in ("jsonb", "json"):
        return f"CAST(NULLIF({expr}, '') AS {target_type})"
    return f"CAST({expr} AS {target_type})"


_CHARACTER = re.compile(r"^(text|character varying|varchar|character|char|bpchar|name)(\(\d+\))?$")


def _value(column: str, stage_type: str, target_type: str) -> str:
    """``s.col``, cast explicitly only where no assignment cast exists (text -> json, numeric, uuid, arrays, enums...).

    Text into a character type keeps the assignment cast (an explicit cast would truncate to the length silently).

    >>> _value("a", "text", "text[]"), _value("a", "text", "character varying(5)")
    ('CAST(s."a" AS text[])', 's."a"')
    """
    if stage_type == "text" and target_type != "text" and not _CHARACTER.match(target_type):
        return _convert(f"s.{quote(column)}", target_type)
    return f"s.{quote(column)}"


def plan_publish(load: Load, default_schema: str, stage: Catalog | None, target: Catalog | None, stage_table: str) -> tuple[Statements, int | None]:
    """The statements of a publish and the index of the one whose row count is the load's rows.

    Parameters
    ----------
    load
        The load (write mode, keys, schema, JSON columns).
    default_schema
        The destination's ``db_schema``, for unqualified table names.
    stage, target
        Catalog rows (name, type, not null, persistence) of the staging table and the
        target; None when the table does not exist.
    stage_table
        The staging table's name (in the target's schema).
    """
    schema, target_name = split_table(load.table, default_schema)
    full_target = f"{schema}.{target_name}"
    st = f"{quote(schema)}.{quote(stage_table)}"
    out: Statements = []
    keys = load.primary_keys
    replacing = load.write_mode == "replace" or target is None
    if stage is None:
        if load.schema is not None and replacing:
            if target is not None:
                out.append((f"DROP TABLE {table_sql(full_target)}", None))
            out.append((create_table(full_target, final_columns(load, None), keys), None))
        return out, None
    stage_types = {c: t for c, t, _, _ in stage}
    if load.schema is not None:
        from conduit.connectors.postgres.types import columns_for

        stage_types.update({c: col.stage for c, col in columns_for(load.schema, load.json_columns).items()})
    final = final_columns(load, stage)
    if replacing and load.write_mode != "merge" and stage[0][3] == "p":
        alter = [f"ALTER COLUMN {quote(c)} TYPE {t} USING {_convert(quote(c), t)}" for c, t, _ in final if stage_types.get(c) != t]
        if alter:
            out.append((f"ALTER TABLE {st} {', '.join(alter)}", None))
        if keys:
            out.append((f"ALTER TABLE {st} ADD CONSTRAINT {quote(constraint(stage_table))} PRIMARY KEY ({column_list(keys)})", None))
        if target is not None:
            out.append((f"DROP TABLE {table_sql(full_target)}", None))
        out.append((f"ALTER TABLE {st} RENAME TO {quote(target_name)}", None))
        if keys:
            out.append((f"ALTER TABLE {table_sql(full_target)} RENAME CONSTRAINT {quote(constraint(stage_table))} TO {quote(constraint(target_name))}", None))
        return out, None
    source = st
    if load.write_mode == "merge":
        source = f"(SELECT DISTINCT ON ({column_list(keys)}) * FROM {st} ORDER BY {column_list(keys)}, {quote(SEQ)} DESC)"
    if replacing:
        if target is not None:
            out.append((f"DROP TABLE {table_sql(full_target)}", None))
        out.append((create_table(full_target, final, keys), None))
        target_types = {c: t for c, t, _ in final}
    else:
        target_types = {c: t for c, t, _, _ in target or []}
    cols = [c for c, _, _, _ in stage if c != SEQ and c in target_types]
    values = [_value(c, stage_types[c], target_types[c]) for c in cols]
    if load.write_mode == "merge" and not replacing:
        on = " AND ".join(f"t.{quote(k)} = s.{quote(k)}" for k in keys)
        sets = ", ".join(f"{quote(c)} = {v}" for c, v in zip(cols, values, strict=True) if c not in keys)
        matched = f"WHEN MATCHED THEN UPDATE SET {sets}" if sets else "WHEN MATCHED THEN DO NOTHING"
        sql = f"MERGE INTO {table_sql(full_target)} AS t USING {source} AS s ON {on} {matched} WHEN NOT MATCHED THEN INSERT ({column_list(cols)}) VALUES ({', '.join(values)})"
    else:
        sql = f"INSERT INTO {table_sql(full_target)} ({column_list(cols)}) SELECT {', '.join(values)} FROM {source} AS s"
    out.append((sql, None))
    out.append((f"DROP TABLE {st}", None))
    return out, len(out) - 2
