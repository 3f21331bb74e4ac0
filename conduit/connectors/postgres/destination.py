"""PostgreSQL as a destination (binary COPY).

Each chunk is binary-COPYed into ``_conduit_stage_<load>`` in the
target's schema, in one transaction with its ``_conduit_chunks`` row; several chunks
stage at once on separate connections (``copy_streams``). Rows are encoded a
batch by pgpq (:mod:`conduit.connectors.postgres.copy_encoder`) and sent through psycopg's COPY: ADBC's
``adbc_ingest`` encodes value by value, at several times the client CPU. When the stage
will become the target (a new table, ``replace``) it is a regular table that publish
renames (zero copy); otherwise it is UNLOGGED and publish INSERTs or MERGEs from it.
Publish is one transaction that also records the load id in ``_conduit_loads``.

An append into an existing table whose column types match skips the stage: its chunks
are COPYed straight into the target, on one connection, in one transaction that the
publish commits (see :meth:`PostgresDestination.stage_streams`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Collection
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from conduit._sql import of_runs, qualified, quote, split_table
from conduit._text import plural
from conduit.connectors.base import SEQ, Capabilities, Destination, Load, StagedChunk
from conduit.connectors.postgres.connection import PostgresOptions, connect_copy, describe, error, ping
from conduit.connectors.postgres.ledger import CATALOG, LEDGER, RECORD, TARGET, record_values, stage_name
from conduit.errors import StagingLost
from conduit.retry import call

if TYPE_CHECKING:
    import psycopg

    CopyConnection = psycopg.Connection[tuple[Any, ...]]
    Connection = CopyConnection
    import pyarrow as pa

    from conduit.connectors.postgres.publish import Statements
    from conduit.schema import Change

_C = TypeVar("_C", bound="Connection")


DDL_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"
"""Taken (``conduit ddl <quoted schema>``) before Conduit's ``CREATE SCHEMA/TABLE ... IF NOT EXISTS`` in a schema:
PostgreSQL's ``IF NOT EXISTS`` is not safe against a concurrent create (the loser fails on the catalog's unique
index, SQLSTATE 23505 or 42710), and Ray workers open the ledger and ensure the same staging table at once. The
lock is the transaction's: the first creates, the others then find."""


class PostgresDestination(Destination):
    """``type: postgresql``: stage with binary COPY, publish in one transaction."""

    Options = PostgresOptions
    capabilities = Capabilities(parallel_stage=2, max_identifier_bytes=63, text_nul=False, max_decimal_precision=1000, remote_stage=True)

    def __init__(self, name: str, options: PostgresOptions, project_dir: Path):
        super().__init__(name, options, project_dir)
        self.capabilities = replace(type(self).capabilities, parallel_stage=options.copy_streams)  # type: ignore[misc]
        self._main: CopyConnection | None = None
        self._local = threading.local()
        self._all: list[Connection] = []
        self._lock = threading.RLock()
        self._ready: set[str] = set()
        self._direct: dict[str, bool] = {}  # load id -> COPY straight into the target
        self._appended: dict[str, int] = {}  # load id -> rows COPYed into the target, not yet committed
        self._append_conn: CopyConnection | None = None
        self.ledger = quote(options.db_schema)

    # --- connections ------------------------------------------------------------

    def _connect(self, opener: Callable[[PostgresOptions, str], _C]) -> _C:
        conn = call(lambda: opener(self.options, f"destination {self.name}"))
        with self._lock:
            self._all.append(conn)
        return conn

    @property
    def conn(self) -> CopyConnection:
        """The main connection (DDL, ledger, publish; ``$1`` placeholders); the ledger tables exist once it is open."""
        if self._main is None:
            self._main = self._connect(lambda options, who: connect_copy(options, who, raw=True))
            with self._main.cursor() as cur:
                try:
                    cur.execute(DDL_LOCK, [f"conduit ddl {self.ledger}"])
                    cur.execute(f"CREATE SCHEMA IF NOT EXISTS {self.ledger}")
                    for sql in LEDGER:
                        cur.execute(sql.format(s=self.ledger))
                    self._main.commit()
                except Exception as exc:  # noqa: BLE001 - a concurrent first run may have created them
                    self._main.rollback()
                    if getattr(exc, "sqlstate", None) not in ("23505", "42P07"):
                        raise error(exc, f"destination {self.name}: creating the ledger tables failed") from None
        return self._main

    def _worker(self) -> CopyConnection:
        """This thread's staging connection (psycopg; parallel staging: one per worker)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            self.conn  # noqa: B018 - ledger tables first
            conn = self._local.conn = self._connect(connect_copy)
            # A staged chunk and its ledger row commit together, so a server crash can only
            # lose whole chunks, which a resume stages again; publish (main connection)
            # stays synchronous and its commit flushes everything staged before it.
            conn.execute("SET synchronous_commit = off")
            conn.commit()
        return conn

    def _appender(self) -> CopyConnection:
        """The connection whose open transaction holds the rows of a direct append (synchronous commit)."""
        if self._append_conn is None:
            self.conn  # noqa: B018 - ledger tables first
            self._append_conn = self._connect(connect_copy)
        return self._append_conn

    def check(self) -> None:
        """Connect and ``SELECT 1``."""
        ping(self.options, f"destination {self.name}")

    def close(self) -> None:
        """Close every connection."""
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.close()
        self._main, self._local, self._append_conn = None, threading.local(), None
        self._direct.clear()  # a direct append's rows died with its connection's transaction
        self._appended.clear()

    def describe(self) -> str:
        """The URI without password."""
        return describe(self.options)

    def default_table(self, resource: str) -> str:
        """``<db_schema>.<resource>``."""
        return f"{self.options.db_schema}.{resource}"

    def sql_type(self, arrow_type: pa.DataType, json: bool = False) -> str:
        """The PostgreSQL column type (``numeric(15,2)``, ``timestamptz``, ``jsonb``...)."""
        from conduit.connectors.postgres.types import pg_column

        return pg_column(arrow_type, json).final

    def _run(self, statements: Statements, what: str, conn: Connection | None = None) -> list[int]:
        """Run statements in one transaction on ``conn`` (main); return their row counts."""
        conn = conn or self.conn
        counts: list[int] = []
        try:
            with conn.cursor() as cur:
                for sql, params in statements:
                    cur.execute(sql, params(counts) if callable(params) else params)
                    counts.append(cur.rowcount)
            conn.commit()
        except Exception as exc:  # noqa: BLE001 - server errors become DestinationError
            with contextlib.suppress(Exception):  # a dropped connection cannot roll back; the first error matters
                conn.rollback()
            raise error(exc, what) from None
        return counts

    def _fetch(self, sql: str, params: list[object]) -> list[tuple[Any, ...]]:
        conn = self.conn
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                rows = cur.fetchall()
            conn.commit()
        except Exception as exc:  # noqa: BLE001
            with contextlib.suppress(Exception):  # a dropped connection cannot roll back; its error matters
                conn.rollback()
            raise error(exc, f"destination {self.name}") from None
        return rows

    # --- tables -------------------------------------------------------------------

    def _catalog(self, table: str) -> list[tuple[str, str, bool, str]] | None:
        """(column, type, not null, persistence) of a table, or None if it does not exist."""
        schema, name = split_table(table, self.options.db_schema)
        rows = self._fetch(CATALOG, [schema, name])
        return [(r[0], r[1], bool(r[2]), r[3]) for r in rows] or None

    def table_schema(self, table: str) -> pa.Schema | None:
        """Arrow schema of the table from the catalog (numeric(p,s) -> decimal128(p,s))."""
        import pyarrow as pa

        from conduit.connectors.postgres.types import TABLE_TYPES, arrow_for_catalog

        cols = self._fetch(TABLE_TYPES, list(split_table(table, self.options.db_schema)))
        return pa.schema([pa.field(c, arrow_for_catalog(t), not nn) for c, t, nn in cols]) if cols else None

    def ddl_for(self, table: str, change: Change) -> str | None:
        """``ALTER TABLE`` adding or widening a column."""
        from conduit.connectors.postgres.types import pg_column

        t = qualified(table, self.options.db_schema)
        if change.source_type is None:
            return None
        if change.kind == "add_column":
            return f"ALTER TABLE {t} ADD COLUMN {quote(change.column)} {pg_column(change.source_type).final};"
        if change.kind == "widen":
            return f"ALTER TABLE {t} ALTER COLUMN {quote(change.column)} TYPE {pg_column(change.source_type).final};"
        return None

    def plan_ddl(self, load: Load) -> list[str]:
        """``CREATE TABLE`` for a new table (``DROP`` first for ``replace``), else the schema changes' ``ALTER TABLE``."""
        from conduit.connectors.postgres.publish import create_table, final_columns, table_sql

        exists = self._catalog(load.table) is not None
        if exists and load.write_mode != "replace":
            return [s for s in (self.ddl_for(load.table, c) for c in load.changes) if s]
        target = ".".join(split_table(load.table, self.options.db_schema))
        return [f"DROP TABLE {table_sql(target)}"] * exists + [create_table(target, final_columns(load, None), load.primary_keys)]

    def _evolved(self, load: Load, target: list[tuple[str, str, bool, str]]) -> tuple[Statements, list[tuple[str, str, bool, str]]]:
        """The DDL for ``load.changes`` (run inside the publish transaction) and the catalog after it."""
        from conduit.connectors.postgres.types import pg_column

        statements: Statements = [(s.rstrip(";"), None) for s in (self.ddl_for(load.table, c) for c in load.changes) if s]
        after = {c: (c, t, nn, p) for c, t, nn, p in target}
        persistence = target[0][3]
        for change in load.changes:
            if change.source_type is None:
                continue
            final = pg_column(change.source_type).final
            if change.kind == "add_column":
                after[change.column] = (change.column, final, False, persistence)
            elif change.kind == "widen":
                c, _, nn, p = after[change.column]
                after[change.column] = (c, final, nn, p)
        return statements, list(after.values())

    def _stage_ref(self, load: Load) -> tuple[str, str]:
        schema, _ = split_table(load.table, self.options.db_schema)
        return schema, stage_name(load.load_id)

    def _ensure_stage(self, load: Load, schema: pa.Schema) -> None:
        """Create the staging table once (committed) before any chunk is COPYed into it.

        Serialized per schema by :data:`DDL_LOCK`, as the ledger's creation is.
        """
        from conduit.connectors.postgres.types import columns_for

        with self._lock:
            if load.load_id in self._ready:
                return
            db_schema, name = self._stage_ref(load)
            final = load.write_mode == "replace" or (load.write_mode == "append" and self._catalog(load.table) is None)
            cols = columns_for(schema, load.json_columns)
            defs = ", ".join(f"{quote(f.name)} {cols[f.name].stage}{'' if f.nullable or f.name == SEQ else ' NOT NULL'}" for f in schema)
            self._run(
                [
                    (DDL_LOCK, [f"conduit ddl {quote(db_schema)}"]),
                    (f"CREATE SCHEMA IF NOT EXISTS {quote(db_schema)}", None),
                    (f"CREATE {'' if final else 'UNLOGGED '}TABLE IF NOT EXISTS {quote(db_schema)}.{quote(name)} ({defs})", None),
                ],
                f"{load.resource}: creating the staging table failed",
            )
            self._ready.add(load.load_id)

    def stage_streams(self, load: Load) -> int:
        """``copy_streams``, or 1 for an append COPYed straight into its target.

        That happens when ``load`` appends to an existing table (or partitioned table)
        whose columns have exactly the types Conduit would stage (binary COPY needs them),
        with no rule or row-level security, no schema change to apply and nothing staged
        by an earlier attempt. The server then writes each row once, instead of staging
        it and copying it again with ``INSERT ... SELECT`` when publishing. The rows
        become visible when the publish commits the transaction; a failure or crash
        rolls it back, so a resume of such a load starts from the beginning.
        """
        return 1 if self._appends_directly(load) else self.options.copy_streams

    def _appends_directly(self, load: Load) -> bool:
        """Whether ``load`` COPYs straight into its target (decided once per load; never for a detached one)."""
        if load.detached:  # its chunks commit on their own (Ray workers): the publish reads the stage
            return False
        with self._lock:
            if load.load_id not in self._direct:
                self._direct[load.load_id] = self._can_append_directly(load)
            return self._direct[load.load_id]

    def _can_append_directly(self, load: Load) -> bool:
        from conduit.connectors.postgres.types import catalog_name, columns_for

        if load.write_mode != "append" or load.changes or load.schema is None:
            return False
        schema, name = split_table(load.table, self.options.db_schema)
        found = self._fetch(TARGET.format(ledger=self.ledger), [schema, name, load.load_id])
        if not found or not found[0][0]:
            return False
        types = {c: t for c, t, _, _ in self._catalog(load.table) or []}
        cols = columns_for(load.schema, load.json_columns)
        return all(types.get(f.name) == catalog_name(cols[f.name].stage) for f in load.schema)

    def staged(self, load: Load) -> list[StagedChunk]:
        """Chunks in ``_conduit_chunks`` for this load; :class:`StagingLost` when their rows are gone.

        An UNLOGGED stage comes back empty from crash recovery (or on a promoted
        standby) while the ledger, a logged table, still lists its chunks: publishing
        from it would silently leave those rows out.
        """
        rows = self._fetch(f"SELECT chunk, part, rows_read_end, rows FROM {self.ledger}._conduit_chunks WHERE load_id = $1 ORDER BY chunk", [load.load_id])
        chunks = [StagedChunk(*r) for r in rows]
        if any(c.rows for c in chunks) and self._stage_lost(load):
            db_schema, name = self._stage_ref(load)
            msg = f"the {plural(len(chunks), 'chunk')} staged before the interruption are gone from {db_schema}.{name} (crash recovery empties UNLOGGED tables)"
            raise StagingLost(msg)
        return chunks

    def _stage_lost(self, load: Load) -> bool:
        """Whether the load's staging table is missing or holds no row (its ledger says it should)."""
        db_schema, name = self._stage_ref(load)
        if self._catalog(f"{db_schema}.{name}") is None:
            return True
        return not self._fetch(f"SELECT 1 FROM {quote(db_schema)}.{quote(name)} LIMIT 1", [])

    def stage(self, load: Load, chunk: StagedChunk, batches: pa.RecordBatchReader) -> int:
        """COPY the chunk into the staging table and add its ledger row, in one transaction."""
        from conduit.connectors.postgres.copy_encoder import CopyEncoder
        from conduit.connectors.postgres.types import cast_batch, columns_for, stage_schema

        direct = self._appends_directly(load)
        db_schema, name = self._stage_ref(load)
        if direct:
            conn, table = self._appender(), qualified(load.table, self.options.db_schema)
        else:
            self._ensure_stage(load, batches.schema)
            conn, table = self._worker(), f"{quote(db_schema)}.{quote(name)}"
        cols = columns_for(batches.schema, load.json_columns)
        target = stage_schema(batches.schema, cols)
        encoder = CopyEncoder(target, {c: col.stage for c, col in cols.items()})
        copy_sql = f"COPY {table} ({', '.join(quote(c) for c in encoder.columns)}) FROM STDIN (FORMAT BINARY)"
        rows = 0
        failed: list[BaseException] = []
        try:
            with conn.cursor() as cur:
                with cur.copy(copy_sql) as copy:
                    copy.write(encoder.header())
                    try:
                        for batch in batches:
                            for piece in encoder.pieces(cast_batch(batch, target, cols)):
                                copy.write(memoryview(piece))  # psycopg cuts large writes: views, not copies
                            rows += batch.num_rows
                    except BaseException as exc:
                        failed.append(exc)
                        raise
                    copy.write(encoder.finish())
                if direct:  # stays open: the publish commits it
                    self._appended[load.load_id] = self._appended.get(load.load_id, 0) + rows
                    return rows
                cur.execute(f"INSERT INTO {self.ledger}._conduit_chunks VALUES (%s, %s, %s, %s, %s)", [load.load_id, chunk.chunk, chunk.part, chunk.rows_read_end, rows])
            conn.commit()
        except BaseException as exc:  # the reader's own error wins, else the server's
            with contextlib.suppress(Exception):
                conn.rollback()
            if direct:  # the rollback took every chunk of the load's transaction with it
                self._appended.pop(load.load_id, None)
            if failed:
                raise failed[0] from None
            if not isinstance(exc, Exception):
                raise
            raise error(exc, f"{load.resource}: staging chunk {chunk.chunk} into {load.table} failed") from None
        return rows

    def is_published(self, load: Load) -> bool:
        """Whether the load id is in ``_conduit_loads``."""
        return bool(self._fetch(f"SELECT 1 FROM {self.ledger}._conduit_loads WHERE load_id = $1", [load.load_id]))

    def publish(self, load: Load) -> int:
        """One transaction: staged rows into the target per write mode, plus the load record."""
        from conduit.connectors.postgres.publish import plan_publish
        from conduit.connectors.postgres.types import keep_existing_types

        if self.is_published(load):
            return 0
        if load.schema is not None:  # a PostgreSQL source's column types, where this database has them
            load = replace(load, schema=keep_existing_types(load.schema, self._fetch))
        if self._direct.get(load.load_id) and not load.detached:  # detached: workers staged, whatever was decided before
            return self._publish_direct(load)
        db_schema, name = self._stage_ref(load)
        stage = self._catalog(f"{db_schema}.{name}")
        target = self._catalog(load.table)
        staged_rows = sum(c.rows for c in self.staged(load))
        evolve: Statements = []
        if target is not None and load.changes and load.write_mode != "replace":
            evolve, target = self._evolved(load, target)
        statements, counted = plan_publish(load, self.options.db_schema, stage, target, name)
        statements = evolve + statements
        if counted is not None:
            counted += len(evolve)

        def rows_of(counts: list[int]) -> int:
            return counts[counted] if counted is not None and counts[counted] >= 0 else staged_rows

        statements += [
            (RECORD.format(ledger=self.ledger, marks="$1, $2, $3, $4, $5, $6"), lambda counts: record_values(load, rows_of(counts))),
            (f"DELETE FROM {self.ledger}._conduit_chunks WHERE load_id = $1", [load.load_id]),
        ]
        counts = self._run(statements, f"{load.resource}: publishing into {load.table} failed")
        rows = rows_of(counts)
        with self._lock:
            self._ready.discard(load.load_id)
        return rows

    def _publish_direct(self, load: Load) -> int:
        """Commit the rows COPYed straight into the target, with the load's record."""
        rows = self._appended.pop(load.load_id, 0)
        db_schema, name = self._stage_ref(load)
        statements: Statements = [
            (f"DROP TABLE IF EXISTS {quote(db_schema)}.{quote(name)}", None),  # an earlier attempt's empty stage
            (RECORD.format(ledger=self.ledger, marks=", ".join(["%s"] * 6)), record_values(load, rows)),
        ]
        self._run(statements, f"{load.resource}: publishing into {load.table} failed", conn=self._appender())
        self._direct.pop(load.load_id, None)
        return rows

    def abort(self, load: Load) -> None:
        """Roll back a direct append; drop the staging table (wherever it is) and the load's ledger rows."""
        if self._direct.pop(load.load_id, None) and self._append_conn is not None:
            with contextlib.suppress(Exception):
                self._append_conn.rollback()
        self._appended.pop(load.load_id, None)
        name = stage_name(load.load_id)
        schemas = self._fetch("SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = $1", [name])
        statements: Statements = [(f"DROP TABLE IF EXISTS {quote(s[0])}.{quote(name)}", None) for s in schemas]
        statements.append((f"DELETE FROM {self.ledger}._conduit_chunks WHERE load_id = $1", [load.load_id]))
        self._run(statements, f"{load.resource}: dropping staged data failed")
        with self._lock:
            self._ready.discard(load.load_id)

    def leftovers(self, runs: Collection[str], remove: bool) -> list[str]:
        """Staging tables (any schema) and ledger rows of ``runs``; dropped when ``remove``."""
        found = self._fetch("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND starts_with(c.relname, $1) ORDER BY 1, 2", ["_conduit_stage_"])
        tables = [(s, t) for s, t in found if of_runs(t, runs)]
        ledger = self._fetch("SELECT to_regclass($1) IS NOT NULL", [f"{self.ledger}._conduit_chunks"])
        loads = self._fetch(f"SELECT load_id, count(*) FROM {self.ledger}._conduit_chunks WHERE load_id <> $1 GROUP BY 1 ORDER BY 1", [""]) if ledger == [(True,)] else []
        loads = [(lid, n) for lid, n in loads if of_runs(lid, runs)]
        if remove and (tables or loads):
            statements: Statements = [(f"DROP TABLE IF EXISTS {quote(s)}.{quote(t)}", None) for s, t in tables]
            statements += [(f"DELETE FROM {self.ledger}._conduit_chunks WHERE load_id = $1", [lid]) for lid, _ in loads]
            self._run(statements, "conduit gc: dropping leftovers failed")
        return [f"staging table {s}.{t}" for s, t in tables] + [f"{plural(n, 'ledger row')} of load {lid}" for lid, n in loads]
