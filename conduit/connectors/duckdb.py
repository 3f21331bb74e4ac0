"""DuckDB files as source (table or query) and as the embedded default destination.

The destination stages each chunk into ``_conduit_stage_<load>`` in the target's
schema, in one transaction with its row in ``_conduit_chunks``; publish is one
transaction that renames, inserts or merges the staged rows into the target and
records the load id in ``_conduit_loads``. Arrow goes in through DuckDB's Arrow scan:
no Python row loops. A local Parquet file whose rows need no transform is read by DuckDB
itself (:meth:`DuckDBDestination.stage_file`), as one chunk.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from conduit import crash_points
from conduit._sql import column_list, of_runs, qualified, quote, split_table, stage_name
from conduit._text import plural
from conduit.config import DEFAULT_BATCH_SIZE, Strict
from conduit.connectors.base import SEQ, Capabilities, Connector, Destination, Load, LocalFile, Part, PlannedPart, Source, StagedChunk, Task
from conduit.errors import DestinationError, SourceError

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from conduit.schema import Change

_GLOB_CHARS = set("*?[]{}")  # read_parquet takes its argument as a pattern: 'a[1].parquet' would read 'a1.parquet'
ROW_GROUP_ROWS = 122_880  # DuckDB's row group size: Arrow batches of multiples of it are written once

_LEDGER = """
CREATE TABLE IF NOT EXISTS main._conduit_chunks (load_id VARCHAR, chunk INTEGER, part VARCHAR, rows_read_end BIGINT, rows BIGINT, PRIMARY KEY (load_id, chunk));
CREATE TABLE IF NOT EXISTS main._conduit_loads (load_id VARCHAR PRIMARY KEY, run_id VARCHAR, resource VARCHAR, table_name VARCHAR, write_mode VARCHAR, rows BIGINT, published_at TIMESTAMPTZ DEFAULT now());
"""


class DuckDBOptions(Strict):
    """Keys of a DuckDB source or destination."""

    path: str = "warehouse.duckdb"
    db_schema: str = Field(default="main")
    threads: int | None = Field(default=None, gt=0)
    memory_limit: str | None = None


def _open(path: Path, read_only: bool, options: DuckDBOptions) -> duckdb.DuckDBPyConnection:
    import duckdb

    config: dict[str, Any] = {}
    if options.threads:
        config["threads"] = options.threads
    if options.memory_limit:
        config["memory_limit"] = options.memory_limit
    try:
        return duckdb.connect(str(path), read_only=read_only, config=config)
    except duckdb.Error as exc:
        msg = f"cannot open DuckDB file {path}: {' '.join(str(exc).split())}"
        raise DestinationError(msg) from None


class DuckDBSource(Source):
    """``type: duckdb`` as a source: a resource's ``query``, or ``SELECT * FROM <name>``."""

    Options = DuckDBOptions
    capabilities = Capabilities(incremental_pushdown=True)

    def _path(self) -> Path:
        return self.project_dir / os.path.expanduser(self.options.path)

    def check(self) -> None:
        """The file must exist and open read-only."""
        if not self._path().is_file():
            msg = f"source {self.name}: DuckDB file not found: {self._path()}"
            raise SourceError(msg)
        _open(self._path(), True, self.options).close()

    def query(self, task: Task) -> tuple[str, list[object]]:
        """The SQL and parameters for ``task``; the high-water mark is a bound parameter."""
        res = task.resource
        sql = res.query or f"SELECT * FROM {qualified(res.table or res.name, self.options.db_schema)}"
        inc = task.incremental
        if inc is not None and inc.value is not None:
            return f"SELECT * FROM ({sql}) AS _conduit_q WHERE {quote(inc.column)} {inc.operator} ?", [inc.value]
        return sql, []

    def plan_parts(self, task: Task) -> list[PlannedPart]:
        """One part: the query (the mark, if any, is its parameter)."""
        return [PlannedPart(self.query(task)[0])]

    def parts(self, task: Task) -> Iterator[Part]:
        """One part: the query's Arrow stream."""
        import duckdb

        self.check()
        con = _open(self._path(), True, self.options)
        sql, params = self.query(task)
        try:
            reader = con.execute(sql, params).to_arrow_reader(task.resource.batch_size or DEFAULT_BATCH_SIZE)
        except duckdb.Error as exc:
            con.close()
            msg = f"{task.resource.name}: query failed: {' '.join(str(exc).split())}"
            raise SourceError(msg) from None
        try:
            yield Part(name=f"duckdb:{self.options.path}", frame=reader)
        finally:
            con.close()


_WRITERS: dict[str, threading.RLock] = {}
_WRITERS_LOCK = threading.Lock()


def writer(path: Path) -> threading.RLock:
    """The lock of one DuckDB file in this process: one catalog-writing transaction at a time.

    Resources loaded at once into the same file each have a connection; DuckDB refuses
    concurrent transactions that touch the same catalog entries (creating the ledger or
    a stage, publishing). Appends to a stage that exists run at once.
    """
    key = str(path.resolve())
    with _WRITERS_LOCK:
        return _WRITERS.setdefault(key, threading.RLock())


class DuckDBDestination(Destination):
    """``type: duckdb``: the embedded destination."""

    Options = DuckDBOptions
    capabilities = Capabilities(parallel_stage=1, arrow_views=True)

    def __init__(self, name: str, options: DuckDBOptions, project_dir: Path):
        super().__init__(name, options, project_dir)
        self.path = project_dir / os.path.expanduser(options.path)
        self._con: duckdb.DuckDBPyConnection | None = None
        self._staging: dict[str, bool] = {}  # stage tables this connection created or appended to

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The connection, opened on first use and kept for the run."""
        if self._con is None:
            self.check()
            with writer(self.path):
                con = _open(self.path, False, self.options)
                for sql in _LEDGER.strip().split(";\n"):
                    con.execute(sql).fetchall()
                self._con = con
        return self._con

    def check(self) -> None:
        """The file's folder must exist."""
        if not self.path.parent.is_dir():
            msg = f"destination {self.name}: folder {self.path.parent} does not exist"
            raise DestinationError(msg)

    def close(self) -> None:
        """Close the connection (releases the file lock)."""
        if self._con is not None:
            self._con.close()
            self._con = None

    def describe(self) -> str:
        """The file path."""
        return f"duckdb:{self.path}"

    def default_table(self, resource: str) -> str:
        """``<db_schema>.<resource>``."""
        return f"{self.options.db_schema}.{resource}"

    def _exists(self, table: str) -> bool:
        schema, name = split_table(table, self.options.db_schema)
        return bool(self.con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = ? AND table_name = ?", [schema, name]).fetchall()[0][0])

    def table_schema(self, table: str) -> pa.Schema | None:
        """Arrow schema of the table, or None."""
        if not self._exists(table):
            return None
        return self.con.sql(f"SELECT * FROM {qualified(table, self.options.db_schema)} LIMIT 0").to_arrow_table().schema

    def sql_type(self, arrow_type: pa.DataType, json: bool = False) -> str:
        """DuckDB's own name for an Arrow type (asks DuckDB); a ``json`` column is text here too."""
        import pyarrow as pa

        empty = pa.table({"c": pa.array([], type=arrow_type)})  # noqa: F841 - read by DuckDB's replacement scan
        return str(self.con.execute("SELECT typeof(c) FROM (SELECT * FROM empty UNION ALL SELECT NULL) LIMIT 1").fetchall()[0][0])

    def ddl_for(self, table: str, change: Change) -> str | None:
        """``ALTER TABLE`` for an added or widened column."""
        t = qualified(table, self.options.db_schema)
        if change.kind == "add_column" and change.source_type is not None:
            return f"ALTER TABLE {t} ADD COLUMN {quote(change.column)} {self.sql_type(change.source_type)};"
        if change.kind == "widen" and change.source_type is not None:
            return f"ALTER TABLE {t} ALTER COLUMN {quote(change.column)} SET DATA TYPE {self.sql_type(change.source_type)};"
        return None

    def plan_ddl(self, load: Load) -> list[str]:
        """``CREATE TABLE`` for a new table (``DROP`` first for ``replace``), else the schema changes' ``ALTER TABLE``."""
        exists = self._exists(load.table)
        if exists and load.write_mode != "replace":
            return [s for s in (self.ddl_for(load.table, c) for c in load.changes) if s]
        target = qualified(load.table, self.options.db_schema)
        columns = ", ".join(f"{quote(f.name)} {self.sql_type(f.type)}" for f in load.schema or [] if f.name != SEQ)
        return [f"DROP TABLE {target}"] * exists + [f"CREATE TABLE {target} ({columns})"]

    def _stage_table(self, load: Load) -> str:
        schema, _ = split_table(load.table, self.options.db_schema)
        return f"{quote(schema)}.{quote(stage_name(load.load_id))}"

    def staged(self, load: Load) -> list[StagedChunk]:
        """Chunks in ``_conduit_chunks`` for this load."""
        rows = self.con.execute("SELECT chunk, part, rows_read_end, rows FROM main._conduit_chunks WHERE load_id = ? ORDER BY chunk", [load.load_id]).fetchall()
        return [StagedChunk(*r) for r in rows]

    def stage(self, load: Load, chunk: StagedChunk, batches: pa.RecordBatchReader) -> int:
        """Insert the chunk into the staging table and its ledger row, in one transaction."""
        import pyarrow as pa

        self.con.register("_conduit_batches", pa.RecordBatchReader.from_batches(batches.schema, aligned(batches)))
        try:
            return self._insert(load, chunk, "SELECT * FROM _conduit_batches", [])
        finally:
            self.con.unregister("_conduit_batches")

    def reads(self, file: LocalFile, schema: pa.Schema) -> bool:
        """Parquet whose columns are all of types DuckDB's reader gives the same values for as Arrow's, at a path that is no pattern.

        Such a file is staged by DuckDB's own ``read_parquet`` (:meth:`stage_file`), faster and
        in less memory than through Arrow batches.
        """
        return file.format == "parquet" and not _GLOB_CHARS & set(file.path) and all(_reads_alike(f.type) for f in schema)

    def stage_file(self, load: Load, chunk: StagedChunk, file: LocalFile, progress: Callable[[float], None]) -> int:
        """``read_parquet`` into the staging table (typed as ``load.schema``) and the ledger row, in one transaction."""
        con = self.con
        con.register("_conduit_batches", load.schema.empty_table())  # type: ignore[union-attr]  # the stage's column types
        con.execute("SET enable_progress_bar = true; SET enable_progress_bar_print = false").fetchall()  # query_progress() reads it
        try:
            with _polled(con, progress):
                return self._insert(load, chunk, "SELECT * FROM read_parquet(?)", [file.path], whole=True)
        finally:
            con.unregister("_conduit_batches")

    def _insert(self, load: Load, chunk: StagedChunk, select: str, params: list[object], whole: bool = False) -> int:
        """One transaction: the stage (created like ``_conduit_batches``) gets ``select``'s rows, the ledger the chunk."""

        con, stage = self.con, self._stage_table(load)
        if not self._staging.get(stage):  # the first chunk creates the stage: a catalog write, one at a time
            with writer(self.path):
                rows = self._insert_locked(con, stage, load, chunk, select, params, whole)
            self._staging[stage] = True
            return rows
        return self._insert_locked(con, stage, load, chunk, select, params, whole)  # appends of different loads run at once

    def _insert_locked(self, con: duckdb.DuckDBPyConnection, stage: str, load: Load, chunk: StagedChunk, select: str, params: list[object], whole: bool) -> int:
        import duckdb

        try:
            con.begin()
            schema, _ = split_table(load.table, self.options.db_schema)
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}").fetchall()
            con.execute(f"CREATE TABLE IF NOT EXISTS {stage} AS SELECT * FROM _conduit_batches WITH NO DATA").fetchall()
            rows = int(con.execute(f"INSERT INTO {stage} BY NAME {select}", params).fetchall()[0][0])
            if whole:
                chunk.rows_read_end = rows
            con.execute("INSERT INTO main._conduit_chunks VALUES (?, ?, ?, ?, ?)", [load.load_id, chunk.chunk, chunk.part, chunk.rows_read_end, rows]).fetchall()
            crash_points.point("stage_commit")
            con.commit()
        except duckdb.Error as exc:
            con.rollback()
            msg = f"{load.resource}: staging into {self.path.name} failed: {' '.join(str(exc).split())}"
            raise DestinationError(msg) from None
        return rows

    def is_published(self, load: Load) -> bool:
        """Whether the load id is in ``_conduit_loads``."""
        return bool(self.con.execute("SELECT count(*) FROM main._conduit_loads WHERE load_id = ?", [load.load_id]).fetchall()[0][0])

    def publish(self, load: Load) -> int:
        """One transaction: staged rows into the target per write mode, plus the load record."""
        if self.is_published(load):
            return 0
        stage, target = self._stage_table(load), qualified(load.table, self.options.db_schema)
        if not self.staged(load):
            return self._publish_empty(load)
        rows = int(self.con.execute(f"SELECT count(*) FROM {stage}").fetchall()[0][0])
        exists = self._exists(load.table)
        keys = load.primary_keys
        statements: list[str] = [s for s in (self.ddl_for(load.table, c) for c in load.changes) if s] if exists else []
        source = stage
        if load.write_mode == "merge":
            part = column_list(keys)
            source = f"(SELECT * EXCLUDE ({quote(SEQ)}) FROM {stage} QUALIFY row_number() OVER (PARTITION BY {part} ORDER BY {quote(SEQ)} DESC) = 1)"
            rows = int(self.con.execute(f"SELECT count(*) FROM {source}").fetchall()[0][0])
        if not exists or load.write_mode == "replace":
            if exists:
                statements.append(f"DROP TABLE {target}")
            if source == stage:
                statements.append(f"ALTER TABLE {stage} RENAME TO {quote(split_table(load.table, '')[1])}")
            else:
                statements.append(f"CREATE TABLE {target} AS SELECT * FROM {source}")
        elif load.write_mode == "append":
            statements.append(f"INSERT INTO {target} BY NAME SELECT * FROM {stage}")
        else:
            match = " AND ".join(f"{target}.{quote(k)} = s.{quote(k)}" for k in keys)
            statements.append(f"DELETE FROM {target} USING {stage} AS s WHERE {match}")
            statements.append(f"INSERT INTO {target} BY NAME SELECT * FROM {source}")
        statements.append(f"DROP TABLE IF EXISTS {stage}")
        self._transaction(statements, load, rows)
        return rows

    def _publish_empty(self, load: Load) -> int:
        """Nothing was staged (no rows at all): create an empty target if there is a schema."""
        statements = []
        if load.schema is not None and (load.write_mode == "replace" or not self._exists(load.table)):
            import pyarrow as pa

            empty = pa.table({f.name: pa.array([], type=f.type) for f in load.schema if f.name != SEQ})
            self.con.register("_conduit_empty", empty)
            statements += [f"DROP TABLE IF EXISTS {qualified(load.table, self.options.db_schema)}", f"CREATE TABLE {qualified(load.table, self.options.db_schema)} AS SELECT * FROM _conduit_empty"]
        self._transaction(statements, load, 0)
        return 0

    def _transaction(self, statements: list[str], load: Load | None = None, rows: int = 0) -> None:

        con = self.con
        with writer(self.path):
            self._transaction_locked(con, statements, load, rows)

    def _transaction_locked(self, con: duckdb.DuckDBPyConnection, statements: list[str], load: Load | None, rows: int) -> None:
        import duckdb

        try:
            con.begin()
            if load is not None:
                schema, _ = split_table(load.table, self.options.db_schema)
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}").fetchall()
            for sql in statements:
                con.execute(sql).fetchall()
            if load is not None:
                con.execute("INSERT INTO main._conduit_loads (load_id, run_id, resource, table_name, write_mode, rows) VALUES (?, ?, ?, ?, ?, ?)", [load.load_id, load.run_id, load.resource, load.table, load.write_mode, rows]).fetchall()
                con.execute("DELETE FROM main._conduit_chunks WHERE load_id = ?", [load.load_id]).fetchall()
                crash_points.point("publish_commit")
            con.commit()
        except duckdb.Error as exc:
            con.rollback()
            what = f"publishing {load.resource}" if load else "schema change"
            msg = f"{what} into {self.path.name} failed: {' '.join(str(exc).split())}"
            raise DestinationError(msg) from None

    def abort(self, load: Load) -> None:
        """Drop the staging table and ledger rows."""
        self._transaction([f"DROP TABLE IF EXISTS {self._stage_table(load)}", f"DELETE FROM main._conduit_chunks WHERE load_id = '{load.load_id}'"])

    def leftovers(self, runs: Collection[str], remove: bool) -> list[str]:
        """Staging tables (any schema) and ledger rows of ``runs``; dropped when ``remove``."""
        con = self.con
        tables = con.execute("SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database() AND starts_with(table_name, '_conduit_stage_') ORDER BY ALL").fetchall()
        tables = [(s, t) for s, t in tables if of_runs(t, runs)]
        loads = [(lid, n) for lid, n in con.execute("SELECT load_id, count(*) FROM main._conduit_chunks GROUP BY load_id ORDER BY load_id").fetchall() if of_runs(lid, runs)]
        if remove and (tables or loads):
            drops = [f"DROP TABLE IF EXISTS {quote(s)}.{quote(t)}" for s, t in tables]
            self._transaction(drops + ["DELETE FROM main._conduit_chunks WHERE load_id = '" + lid.replace("'", "''") + "'" for lid, _ in loads])
        return [f"staging table {s}.{t}" for s, t in tables] + [f"{plural(n, 'ledger row')} of load {lid}" for lid, n in loads]


def _reads_alike(t: pa.DataType) -> bool:
    """Arrow types whose Parquet columns DuckDB reads as the same values (no dictionary, float16, map, ...).

    Nanosecond timestamps are left to Arrow: DuckDB reads a legacy INT96 one to microseconds.
    """
    import pyarrow as pa

    from conduit.schema import is_bytes, is_text

    if pa.types.is_timestamp(t) and t.unit == "ns":
        return False
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t):
        return _reads_alike(t.value_type)
    if pa.types.is_struct(t):
        return all(_reads_alike(f.type) for f in t)
    checks = (pa.types.is_integer, pa.types.is_float32, pa.types.is_float64, pa.types.is_decimal128, pa.types.is_boolean, pa.types.is_date32, pa.types.is_timestamp, pa.types.is_time64)
    return any(c(t) for c in checks) or is_text(t) or is_bytes(t)


@contextmanager
def _polled(con: duckdb.DuckDBPyConnection, progress: Callable[[float], None], every_s: float = 0.5) -> Iterator[None]:
    """Call ``progress`` with DuckDB's fraction done of the running statement, from a thread, every ``every_s``."""
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(every_s):
            done = con.query_progress()
            if done >= 0:
                progress(min(done, 100.0) / 100)

    thread = threading.Thread(target=poll, name="conduit-duckdb-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def aligned(batches: Iterator[pa.RecordBatch], size: int = ROW_GROUP_ROWS) -> Iterator[pa.RecordBatch]:
    """The same rows in batches of whole multiples of ``size`` rows (the last one excepted).

    DuckDB keeps each Arrow batch of an insert in its own row groups (to preserve
    order); a batch that does not fill its last row group leaves a partial one that the
    next checkpoint rewrites, which at scale costs as much as the insert. Only the rows
    that straddle two input batches are copied (at most ``size`` per batch).

    Examples
    --------
    >>> import pyarrow as pa
    >>> out = aligned(iter([pa.record_batch({"x": list(range(n))}) for n in (5, 7, 2, 9)]), size=4)
    >>> [b.num_rows for b in out]
    [4, 4, 4, 4, 4, 3]
    """
    import pyarrow as pa

    tail: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        start = 0
        if held:
            need = min(size - held, batch.num_rows)
            tail.append(batch.slice(0, need))
            held += need
            start = need
            if held < size:
                continue
            yield pa.Table.from_batches(tail).combine_chunks().to_batches()[0]
            tail, held = [], 0
        whole = (batch.num_rows - start) // size * size
        if whole:
            yield batch.slice(start, whole)
        rest = batch.num_rows - start - whole
        if rest:
            tail, held = [batch.slice(start + whole, rest)], rest
    if held:
        yield pa.Table.from_batches(tail).combine_chunks().to_batches()[0]


CONNECTOR = Connector("duckdb", DuckDBSource, DuckDBDestination)
