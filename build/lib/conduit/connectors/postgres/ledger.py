"""The SQL a PostgreSQL destination runs on the catalog and on its ledger tables.

``_conduit_chunks`` holds a row per staged chunk and ``_conduit_loads`` one per published
load, both in the ledger schema; a load stages into ``_conduit_stage_<load id>``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conduit.connectors.base import Load

LEDGER = [
    "CREATE TABLE IF NOT EXISTS {s}._conduit_chunks (load_id text, chunk integer, part text, rows_read_end bigint, rows bigint, PRIMARY KEY (load_id, chunk))",
    "CREATE TABLE IF NOT EXISTS {s}._conduit_loads (load_id text PRIMARY KEY, run_id text, resource text, table_name text, write_mode text, rows bigint, published_at timestamptz DEFAULT now())",
]
CATALOG = """SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, c.relpersistence
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"""


RECORD = "INSERT INTO {ledger}._conduit_loads (load_id, run_id, resource, table_name, write_mode, rows) VALUES ({marks})"
"""A published load's ledger row; ``marks`` are the driver's placeholders (ADBC ``$1``, psycopg ``%s``)."""


def record_values(load: Load, rows: int) -> list[object]:
    """The parameters of :data:`RECORD` for a load of ``rows`` rows."""
    return [load.load_id, load.run_id, load.resource, load.table, load.write_mode, rows]


TARGET = """SELECT c.relkind IN ('r', 'p') AND NOT c.relhasrules AND NOT c.relrowsecurity
  AND NOT EXISTS (SELECT 1 FROM {ledger}._conduit_chunks WHERE load_id = $3)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2"""
"""Whether a table takes COPY as it takes INSERT (COPY ignores rules; row-level security refuses it), with nothing staged yet."""


def stage_name(load_id: str) -> str:
    """The staging table of a load: ``_conduit_stage_<load id>``, hashed to fit 63 bytes."""
    import hashlib

    name = f"_conduit_stage_{load_id}".replace("-", "_")
    if len(name.encode()) <= 63:
        return name
    return name.encode()[:50].decode(errors="ignore") + "_" + hashlib.sha256(load_id.encode()).hexdigest()[:12]
