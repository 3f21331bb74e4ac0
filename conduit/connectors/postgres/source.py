"""PostgreSQL as a source: a resource's query or table, streamed.

``cursor.fetch_record_batch()`` streams Arrow batches; ``numeric`` columns become
``decimal(p,s)`` from the type modifier ADBC reports; an incremental mark is a bound
parameter. Types ADBC cannot read exactly are cast in SQL first, and every field
records its source column's type (:mod:`conduit.connectors.postgres.source_types`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from conduit._sql import qualified, quote, split_table
from conduit.connectors.base import Capabilities, Part, PlannedPart, Source, Task
from conduit.connectors.postgres.connection import PostgresOptions, connect, describe, error, ping
from conduit.connectors.postgres.source_types import enclosable
from conduit.errors import ConduitError, SourceError
from conduit.retry import call


class PostgresSource(Source):
    """``type: postgresql`` as a source: a resource's ``query``, or its table."""

    Options = PostgresOptions
    capabilities = Capabilities(incremental_pushdown=True)

    def check(self) -> None:
        """Connect and ``SELECT 1``."""
        ping(self.options, f"source {self.name}")

    def describe(self) -> str:
        """The URI without password."""
        return describe(self.options)

    def base_query(self, task: Task) -> str:
        """The resource's query, or ``SELECT *`` from its table."""
        res = task.resource
        if res.query:  # wrapped in subqueries below: no trailing semicolon
            return res.query.strip().rstrip(";").rstrip()
        return f"SELECT * FROM {qualified(res.table or res.name, self.options.db_schema)}"

    def query(self, task: Task) -> tuple[str, list[object]]:
        """The SQL and parameters for ``task``; the high-water mark is a bound parameter ($1)."""
        sql = self.base_query(task)
        inc = task.incremental
        if inc is not None and inc.value is not None:
            return f"SELECT * FROM ({enclosable(sql)}) AS _conduit_q WHERE {quote(inc.column)} {inc.operator} $1", [inc.value]
        return sql, []

    def estimate_rows(self, task: Task) -> int | None:
        """``reltuples`` of the table (no estimate for queries)."""
        if task.resource.query:
            return None
        schema, name = split_table(task.resource.table or task.resource.name, self.options.db_schema)
        conn = connect(self.options, f"source {self.name}", autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT c.reltuples::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2", [schema, name])
                row = cur.fetchone()
            return int(row[0]) if row and row[0] is not None and row[0] >= 0 else None
        finally:
            conn.close()

    def plan_parts(self, task: Task) -> list[PlannedPart]:
        """One part: the query (the mark, if any, is its parameter $1)."""
        return [PlannedPart(self.query(task)[0])]

    def parts(self, task: Task) -> Iterator[Part]:
        """One part: the query's Arrow stream, numeric columns as decimal(p,s)."""
        import pyarrow as pa

        from conduit.connectors.postgres import source_types
        from conduit.connectors.postgres.types import readable, readable_schema

        who = f"source {self.name}"
        try:
            columns = call(lambda: source_types.describe(self.options, who, self.base_query(task)))
        except ConduitError:
            raise
        except Exception as exc:  # noqa: BLE001 - the server's message, one line
            raise SourceError(str(error(exc, f"{task.resource.name}: query failed"))) from None
        sql, params = self.query(task)
        sql = source_types.rewrite(sql, columns)
        name = f"postgresql:{task.resource.table or task.resource.name}" if not task.resource.query else "postgresql:query"
        if task.resource.partition_column:
            yield from self._key_ranges(task, name, sql, params, columns)
            return
        conn = call(lambda: connect(self.options, who))
        cur = conn.cursor()
        cur.adbc_statement.set_options(**{"adbc.postgresql.batch_size_hint_bytes": str(32 << 20)})
        try:
            cur.execute(sql, params or None)
            raw = cur.fetch_record_batch()
            schema = readable_schema(source_types.with_pg_types(raw.schema, columns))
        except SourceError:
            cur.close()
            conn.close()
            raise
        except Exception as exc:  # noqa: BLE001 - the server's message, one line
            cur.close()
            conn.close()
            msg = str(error(exc, f"{task.resource.name}: query failed"))
            raise SourceError(msg) from None
        reader = pa.RecordBatchReader.from_batches(schema, (readable(b, schema) for b in raw))
        try:
            yield Part(name=name, frame=reader)
        finally:
            cur.close()
            conn.close()

    def _key_ranges(self, task: Task, name: str, sql: str, params: list[object], columns: list[Any]) -> Iterator[Part]:
        """``partition_column``: one part per key range, each connecting when read (:mod:`conduit.connectors.postgres.key_ranges`)."""
        from conduit.connectors.postgres import key_ranges, source_types
        from conduit.connectors.postgres.types import readable_schema

        who, column = f"source {self.name}", str(task.resource.partition_column)
        if column not in {c.name for c in columns}:
            msg = f"{task.resource.name}: partition_column {column} is not a column of the query"
            raise SourceError(msg)
        inner = enclosable(sql)
        try:
            schema = readable_schema(source_types.with_pg_types(key_ranges.schema_of(self.options, who, inner, params), columns))
        except ConduitError:
            raise
        except Exception as exc:  # noqa: BLE001 - the server's message, one line
            raise SourceError(str(error(exc, f"{task.resource.name}: query failed"))) from None
        for part, range_sql in key_ranges.key_ranges(self.options, who, name, inner, params, column):
            yield Part(name=part, frame=key_ranges.KeyRange(self.options, who, range_sql, params, schema))
