"""Which PostgreSQL result columns the source reads as they are, and which it rewrites in SQL.

ADBC's PostgreSQL driver hands over a type it has no Arrow mapping for as its binary wire
format (tsvector, inet, ranges, bit, point, timetz, xml...), money as its integer cents,
a multi-dimensional array flattened, and ±infinity dates as absurd dates. So before the
query runs, the source describes its result columns (types, typmods, the table column each
comes from) and the catalog facts of their types, and wraps the query in a select list
that casts in SQL, so no row passes through Python:

- a type ADBC reads exactly stays as it is (integers, floats, bool, text types, bytea,
  uuid, json/jsonb, time, enums; a domain over one of these);
- ``money`` becomes ``numeric`` (its amount, not the cents);
- ``numeric``: NaN and ±Infinity (and, for a numeric without precision, read as
  decimal(38,10), a value with more than 28 integer digits or 10 decimals) become NULL and
  the row a dead letter;
- ``date``/``timestamp``/``timestamptz``: ±infinity becomes NULL and the row a dead letter
  (``_conduit_error`` names the column and its type);
- a one-dimensional array of a plain element type stays a list; a row whose value has more
  dimensions is a dead letter; a column declared with several dimensions is text;
- everything else (ranges, network and geometric types, bit strings, tsvector, xml, timetz,
  interval, composites, other arrays, domains over these) is its text form (``col::text``).

Each Arrow field records the source column's declared type (``format_type``) in its
metadata under ``conduit.pg_type`` (``types.PG_TYPE``), which a PostgreSQL destination uses to create the same type.

Examples
--------
>>> col = Column("tags", "integer[]", "_int4", "b", "A", "int4", "b", 1)
>>> plan(col)
('"tags"', 'CASE WHEN array_ndims("tags") > 1 THEN \\'column tags (integer[]): a multi-dimensional array in a column read as one-dimensional; cast it in the query (tags::text)\\' END')
>>> plan(Column("m", "money", "money", "b", "N", None, None, 0))[0]
'"m"::numeric'
>>> plan(Column("r", "int4range", "int4range", "r", "R", None, None, 0))[0]
'"r"::text'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from conduit._sql import quote
from conduit.connectors.base import ERROR

if TYPE_CHECKING:
    import pyarrow as pa

    from conduit.connectors.postgres.connection import PostgresOptions

_EXACT = {"bool", "int2", "int4", "int8", "float4", "float8", "text", "varchar", "bpchar", "name", "bytea", "uuid", "json", "jsonb", "time"}
_LIST_ELEMENTS = {"bool", "int2", "int4", "int8", "float4", "float8", "text", "varchar", "bpchar", "name"}
_DATES = {"date", "timestamp", "timestamptz"}

_DESCRIBE = """
WITH RECURSIVE cols(i, oid, mod, tab, att) AS (SELECT * FROM unnest(%s::int[], %s::oid[], %s::int[], %s::oid[], %s::int[])),
base(i, oid) AS (
  SELECT i, oid FROM cols
  UNION ALL
  SELECT b.i, t.typbasetype FROM base b JOIN pg_type t ON t.oid = b.oid WHERE t.typtype = 'd'
)
SELECT format_type(COALESCE(a.atttypid, c.oid), COALESCE(a.atttypmod, c.mod)) || repeat('[]', COALESCE(a.attndims, 1) - 1), bt.typname, bt.typtype, bt.typcategory, et.typname, et.typtype, COALESCE(a.attndims, 0), format_type(c.oid, c.mod)
FROM cols c
JOIN base b ON b.i = c.i
JOIN pg_type bt ON bt.oid = b.oid AND bt.typtype <> 'd'
LEFT JOIN pg_type et ON et.oid = bt.typelem AND bt.typcategory = 'A'
LEFT JOIN pg_attribute a ON a.attrelid = c.tab AND a.attnum = c.att AND c.att > 0
ORDER BY c.i
"""


@dataclass(frozen=True)
class Column:
    """One result column: its name, declared type, and the catalog facts of its base type (domains resolved)."""

    name: str
    declared: str  # format_type(), e.g. integer[], money, myschema.mood (integer[][] for a column declared so)
    base: str  # pg_type.typname of the base type
    typtype: str  # b base, c composite, e enum, r range, m multirange, p pseudo
    category: str  # pg_type.typcategory (A: array)
    element: str | None  # an array's element typname
    element_typtype: str | None
    ndims: int  # the table column's declared dimensions (0: unknown)
    result: str = ""  # format_type() of the result column itself (a domain's base type, numeric's typmod)
    server: int = 150000  # server_version_num (numeric has ±Infinity from 14)


def plan(col: Column) -> tuple[str, str | None]:
    """The select-list expression for ``col`` and the SQL of its dead-letter reason (or None)."""
    ref = quote(col.name)
    what = f"column {col.name} ({col.declared})"
    if col.base == "numeric" and col.typtype == "b":
        return _numeric(col, ref, what)
    if col.typtype == "e" or (col.typtype == "b" and col.base in _EXACT):
        return ref, None
    if col.base == "money":
        return f"{ref}::numeric", None
    if col.base in _DATES:
        reason = _literal(f"{what}: infinity has no {col.base} value in Arrow; filter it or cast it in the query ({col.name}::text)")
        return f"CASE WHEN isfinite({ref}) THEN {ref} END", f"CASE WHEN NOT isfinite({ref}) THEN {reason} END"
    if col.category == "A" and col.element in _LIST_ELEMENTS and col.element_typtype == "b" and col.ndims <= 1:
        reason = _literal(f"{what}: a multi-dimensional array in a column read as one-dimensional; cast it in the query ({col.name}::text)")
        return ref, f"CASE WHEN array_ndims({ref}) > 1 THEN {reason} END"
    return f"{ref}::text", None


def _numeric(col: Column, ref: str, what: str) -> tuple[str, str | None]:
    """NaN and ±Infinity (and, without a precision, a value decimal(38,10) cannot hold) are dead letters; the typmod stays.

    A numeric(p,s) cannot hold an infinity, and NaN sorts above Infinity: two comparisons find all three.
    """
    constrained = col.result not in ("", "numeric")
    special = f"{ref} = 'NaN'" if constrained or col.server < 140000 else f"({ref} >= 'Infinity' OR {ref} <= '-Infinity')"
    whens = [(special, f"{what}: NaN and Infinity have no decimal value; filter them or cast it in the query ({col.name}::text)")]
    if not constrained:  # read as decimal(38,10)
        whens.append(
            (f"scale({ref}) > 10 OR abs({ref}) >= 1e28", f"{what}: a value with more than 28 integer digits or 10 decimals does not fit decimal(38,10) (numeric without precision); cast it in the query ({col.name}::text, or ::numeric(p,s))")
        )
    bad = " OR ".join(f"({cond})" for cond, _ in whens) if len(whens) > 1 else whens[0][0]
    reason = "CASE " + " ".join(f"WHEN {cond} THEN {_literal(why)}" for cond, why in whens) + " END"
    return f"CASE WHEN {bad} THEN NULL::{col.result or 'numeric'} ELSE {ref} END", reason


def enclosable(sql: str) -> str:
    """``sql`` ready to be put in parentheses: a line break after a last line holding a ``--`` comment.

    >>> enclosable("SELECT 1 -- one"), enclosable("SELECT 1")
    ('SELECT 1 -- one\\n', 'SELECT 1')
    """
    return sql + "\n" if "--" in sql.rsplit("\n", 1)[-1] else sql


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def describe(options: PostgresOptions, who: str, sql: str) -> list[Column]:
    """The result columns of ``sql`` (run with ``LIMIT 0`` on a psycopg connection) with their types' catalog facts.

    A column that is a table's column takes that column's declared type (the server
    describes a domain column as its base type).
    """
    from conduit.connectors.postgres.connection import connect_copy

    conn = connect_copy(options, who)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT * FROM ({enclosable(sql)}) AS _conduit_q LIMIT 0")  # type: ignore[arg-type]
            res = cur.pgresult
            assert res is not None
            n = res.nfields
            names = [(res.fname(i) or b"").decode() for i in range(n)]
            oids, mods = [res.ftype(i) for i in range(n)], [res.fmod(i) for i in range(n)]
            tables, atts = [res.ftable(i) for i in range(n)], [res.ftablecol(i) for i in range(n)]
            cur.execute(_DESCRIBE, [list(range(n)), oids, mods, tables, atts])  # type: ignore[arg-type]
            facts = cur.fetchall()
        conn.rollback()
        server = conn.info.server_version
    finally:
        conn.close()
    return [Column(name, f[0], f[1], f[2], f[3], f[4], f[5], int(f[6]), f[7], server) for name, f in zip(names, facts, strict=True)]


def rewrite(sql: str, columns: list[Column]) -> str:
    """``sql`` wrapped in a select list that casts what ADBC cannot read exactly (``sql`` itself when nothing needs it)."""
    plans = [plan(c) for c in columns]
    if all(expr == quote(c.name) and reason is None for c, (expr, reason) in zip(columns, plans, strict=True)):
        return sql
    if len({c.name for c in columns}) < len(columns) or ERROR in {c.name for c in columns}:
        return sql  # duplicate names cannot be referenced one by one: read as ADBC does
    select = [f"{expr} AS {quote(c.name)}" for c, (expr, _) in zip(columns, plans, strict=True)]
    reasons = [r for _, r in plans if r is not None]
    if reasons:
        select.append(f"{reasons[0]} AS {quote(ERROR)}" if len(reasons) == 1 else f"COALESCE({', '.join(reasons)}) AS {quote(ERROR)}")  # the first column at fault
    return f"SELECT {', '.join(select)} FROM ({enclosable(sql)}) AS _conduit_src"


def with_pg_types(schema: pa.Schema, columns: list[Column]) -> pa.Schema:
    """``schema`` with each source column's declared type in its field metadata (``types.PG_TYPE``)."""
    import pyarrow as pa

    from conduit.connectors.postgres.types import PG_TYPE

    declared = {c.name: c.declared for c in columns}
    fields = []
    for f in schema:
        if f.name in declared:
            f = f.with_metadata({**(f.metadata or {}), PG_TYPE: declared[f.name].encode()})
        fields.append(f)
    return pa.schema(fields)
