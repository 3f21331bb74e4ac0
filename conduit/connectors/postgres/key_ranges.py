"""A PostgreSQL source read in key ranges: ``partition_column`` cuts a query into parts loaded at once.

A resource with ``partition_column: <integer column>`` is read as :data:`RANGES` parts,
``WHERE col >= a AND col < b ORDER BY col`` over the resource's query (after its
incremental filter), plus one part for ``col IS NULL`` when there are such rows. The
bounds split ``min .. max`` of the column evenly, so a resumed run over the same rows
finds the same part names (``postgresql:<table>#<col>=[a,b)``) in its ledger; each part
is ordered by the column, so a resume that skips a part's staged rows skips the same
rows. Every part opens its own connection only when it is read (:class:`KeyRange`),
so ``--workers`` parts stream at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from conduit._sql import quote
from conduit.connectors.base import Seekable
from conduit.connectors.postgres.connection import PostgresOptions, connect, error
from conduit.errors import ConduitError, SourceError
from conduit.retry import call

if TYPE_CHECKING:
    import pyarrow as pa

RANGES = 8
"""Key ranges of a resource (not ``--workers``: part names must not depend on the run's options)."""


class KeyRange(Seekable):
    """One key range's rows as a stream that connects when read."""

    def __init__(self, options: PostgresOptions, who: str, sql: str, params: list[object], schema: pa.Schema):
        self.options, self.who, self.sql, self.params, self.schema = options, who, sql, params, schema

    def batches(self, skip: int, batch_size: int, want: pa.Schema | None = None) -> tuple[int, Iterator[pa.RecordBatch]]:
        """From the range's first row (the caller drops the ``skip`` rows already staged)."""
        return 0, self._read()

    def _read(self) -> Iterator[pa.RecordBatch]:
        from conduit.connectors.postgres.types import readable

        conn = call(lambda: connect(self.options, self.who))
        cur = conn.cursor()
        try:
            cur.adbc_statement.set_options(**{"adbc.postgresql.batch_size_hint_bytes": str(32 << 20)})
            try:
                cur.execute(self.sql, self.params or None)
                raw = cur.fetch_record_batch()
            except ConduitError:
                raise
            except Exception as exc:  # noqa: BLE001 - the server's message, one line
                raise SourceError(str(error(exc, f"{self.who}: query failed"))) from None
            for batch in raw:
                yield readable(batch, self.schema)
        finally:
            cur.close()
            conn.close()


def key_ranges(options: PostgresOptions, who: str, name: str, sql: str, params: list[object], column: str) -> list[tuple[str, str]]:
    """(part name, SQL) of each range of ``sql`` by ``column``; empty when ``sql`` has no rows."""
    col = quote(column)
    conn = call(lambda: connect(options, who, autocommit=True))
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT min({col})::text, max({col})::text, count(*) FILTER (WHERE {col} IS NULL) FROM ({sql}) AS _conduit_k", params or None)
            low, high, nulls = cur.fetchone()  # type: ignore[misc]
    except ConduitError:
        raise
    except Exception as exc:  # noqa: BLE001 - the server's message, one line
        raise SourceError(str(error(exc, f"{who}: partition_column {column}"))) from None
    finally:
        conn.close()
    out: list[tuple[str, str]] = []
    if low is not None:
        try:
            lo, hi = int(low), int(high) + 1
        except ValueError:
            msg = f"{who}: partition_column {column} must be an integer column (its values look like {low!r})"
            raise SourceError(msg) from None
        width = max(1, -(-(hi - lo) // RANGES))
        for a in range(lo, hi, width):
            b = min(a + width, hi)
            out.append((f"{name}#{column}=[{a},{b})", f"SELECT * FROM ({sql}) AS _conduit_k WHERE {col} >= {a} AND {col} < {b} ORDER BY {col}"))
    if nulls:
        out.append((f"{name}#{column}=null", f"SELECT * FROM ({sql}) AS _conduit_k WHERE {col} IS NULL"))
    return out


def schema_of(options: PostgresOptions, who: str, sql: str, params: list[object]) -> Any:
    """The Arrow schema ``sql`` reads as (``LIMIT 0``)."""
    conn = call(lambda: connect(options, who))
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT * FROM ({sql}) AS _conduit_k LIMIT 0", params or None)
            return cur.fetch_record_batch().schema
    finally:
        conn.close()
