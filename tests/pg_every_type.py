"""A PostgreSQL table holding every catalog type the source must read faithfully (issue 17.2).

Used by ``tests/integration/test_pg_source_types.py`` and the conformance suite. Rows 1-3
load; row 4 (±infinity dates and timestamps), row 5 (a two-dimensional value in a column
declared one-dimensional), rows 6-8 (numeric NaN, -Infinity, 11 decimals in a numeric
without precision) are dead letters whose reasons name the column and its type.
"""

from __future__ import annotations

from typing import Any

# column -> how the source hands it on: "exact" (a typed Arrow value), or "text" (PostgreSQL's text form)
COLUMNS: dict[str, tuple[str, str]] = {
    "id": ("integer", "exact"),
    "tsv": ("tsvector", "text"),
    "net": ("cidr", "text"),
    "addr": ("inet", "text"),
    "mac": ("macaddr", "text"),
    "r": ("int4range", "text"),
    "tr": ("tstzrange", "text"),
    "mo": ("money", "exact"),  # as numeric
    "b": ("bit(4)", "text"),
    "vb": ("bit varying", "text"),
    "p": ("point", "text"),
    "tt": ("time with time zone", "text"),
    "x": ("xml", "text"),
    "comp": ("{s}.pair", "text"),
    "arr2": ("integer[][]", "text"),
    "arr1": ("integer[]", "exact"),
    "tarr": ("text[]", "exact"),
    "d": ("date", "exact"),
    "ts": ("timestamp without time zone", "exact"),
    "tstz": ("timestamp with time zone", "exact"),
    "dom": ("{s}.posint", "exact"),
    "u": ("uuid", "exact"),
    "e": ("{s}.mood", "exact"),
    "j": ("json", "exact"),
    "jb": ("jsonb", "exact"),
    "iv": ("interval", "text"),
    "n": ("numeric(10,2)", "exact"),
    "nn": ("numeric", "exact"),  # without precision: read as decimal(38,10)
}

ROWS = [
    "1, 'a fat cat', '10.0.0.0/8', '192.168.1.1/24', '08:00:2b:01:02:03', '[1,5)', '[2020-01-01 00:00+00,2021-01-01 00:00+00)', 1234.56, B'1010', B'101', '(1.5,2)', '12:00:00+02'"
    ", '<a>x</a>', ROW(1,'x'), '{{1,2},{3,4}}', '{1,2}', '{a,\"b c\"}', '2024-02-29', '2024-01-02 03:04:05.678901'"
    ", '2024-01-02 03:04:05+00', 5, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'happy', '{\"b\": 1,  \"a\": 2}', '{\"b\": 1, \"a\": 2}', '1 day 02:00:00', 1.23, 12345.6789",
    "2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL",
    "3, '''a'':1A ''b'':2', '::/0', '::1', 'ff:ff:ff:ff:ff:ff', 'empty', '(,2020-01-01 00:00+00]', -0.01, B'0000', B'', '(-1.5,1e-10)', '23:59:59.999999-14:59'"
    ", '<b>ü &amp; ✓</b>', ROW(NULL,'a,\"b'), '{{{1,NULL}},{{3,4}}}', '{}', '{NULL,\"\",\",\"}', '0001-01-01', '1900-01-01 00:00:00'"
    ", '1970-01-01 00:00:00+00', 1, '00000000-0000-0000-0000-000000000000', 'sad', '[]', 'null', '-1 mons +2 days 00:00:01.5', -99999999.99, -0.0000000001",
    "4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'infinity', '-infinity', 'infinity', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL",
    "5, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '{{5,6}}', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL",
    "6" + ", NULL" * 26 + ", 'NaN'",
    "7" + ", NULL" * 26 + ", '-Infinity'",
    "8" + ", NULL" * 26 + ", 1.00000000001",
]
LANDED = [1, 2, 3]
DEAD = {4: ("d", "date"), 5: ("arr1", "integer[]"), 6: ("nn", "numeric"), 7: ("nn", "numeric"), 8: ("nn", "numeric")}


def create(cur: Any, schema: str, table: str = "every_type") -> None:
    """Create the types and the table in ``schema`` (a psycopg or DB-API cursor, autocommit) and insert :data:`ROWS`."""
    s = f'"{schema}"'
    cur.execute(f"CREATE TYPE {s}.mood AS ENUM ('sad', 'happy')")
    cur.execute(f"CREATE TYPE {s}.pair AS (a integer, b text)")
    cur.execute(f"CREATE DOMAIN {s}.posint AS integer CHECK (VALUE > 0)")
    defs = ", ".join(f"{c} {t.format(s=s)}" for c, (t, _) in COLUMNS.items())
    cur.execute(f'CREATE TABLE {s}."{table}" ({defs}, PRIMARY KEY (id))')
    for row in ROWS:
        cur.execute(f'INSERT INTO {s}."{table}" VALUES ({row})')


TEXT_FORM = {"nn": "trim_scale(nn)::text"}
"""Decimals carry no display scale: a numeric without precision lands with scale 10 (12345.6789000000), the same value."""


def text_forms(cur: Any, relation: str) -> dict[int, dict[str, str | None]]:
    """Each row's columns as PostgreSQL's own text form (``col::text``), by id: the independent truth."""
    cols = ", ".join(TEXT_FORM.get(c, f"{c}::text") for c in COLUMNS)
    cur.execute(f"SELECT {cols} FROM {relation} ORDER BY id")
    return {int(r[0]): dict(zip(COLUMNS, r, strict=True)) for r in cur.fetchall()}
