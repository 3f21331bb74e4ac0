"""The local store: one DuckDB file with runs, resource runs, state, checkpoints, schemas.

Every method opens the file, does its work and closes it, retrying while another
process holds the lock, so ``conduit query`` works while a run is going. Table names
and columns are what ``conduit query`` shows users; they are stable.

Examples
--------
>>> import pathlib, tempfile
>>> store = Store(pathlib.Path(tempfile.mkdtemp()) / "conduit.duckdb")
>>> store.start_run("r1", "ingest.yml", "abc", "0.1.0")
>>> store.finish_run("r1", "success")
>>> store.query("SELECT run_id, status FROM runs")
(['run_id', 'status'], [('r1', 'success')])
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from conduit.errors import ConfigError, StoreLocked

if TYPE_CHECKING:
    import duckdb

DDL = """
CREATE TABLE IF NOT EXISTS runs (run_id VARCHAR PRIMARY KEY, started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ,
  status VARCHAR, config_path VARCHAR, config_hash VARCHAR, conduit_version VARCHAR, error VARCHAR);
CREATE TABLE IF NOT EXISTS resource_runs (run_id VARCHAR, resource VARCHAR, source VARCHAR, destination VARCHAR,
  table_name VARCHAR, write_mode VARCHAR, status VARCHAR, rows_read BIGINT, rows_written BIGINT, rows_dlq BIGINT,
  rows_warned BIGINT, bytes_read BIGINT, started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ, duration_s DOUBLE,
  rows_per_s DOUBLE, hwm_before VARCHAR, hwm_after VARCHAR, error VARCHAR, rows_filtered BIGINT, dlq_path VARCHAR,
  checks_json VARCHAR, PRIMARY KEY (run_id, resource));
CREATE TABLE IF NOT EXISTS state (resource VARCHAR, incremental_column VARCHAR, value VARCHAR,
  value_type VARCHAR, updated_at TIMESTAMPTZ, run_id VARCHAR, destination VARCHAR DEFAULT '', db_schema VARCHAR DEFAULT '',
  table_name VARCHAR DEFAULT '', PRIMARY KEY (resource, destination, db_schema, table_name));
CREATE TABLE IF NOT EXISTS checkpoints (run_id VARCHAR, resource VARCHAR, chunk INTEGER, rows BIGINT,
  committed_at TIMESTAMPTZ, part VARCHAR, rows_read_end BIGINT, mark VARCHAR, PRIMARY KEY (run_id, resource, chunk));
CREATE TABLE IF NOT EXISTS files_seen (resource VARCHAR, file VARCHAR, run_id VARCHAR, seen_at TIMESTAMPTZ, destination VARCHAR DEFAULT '',
  db_schema VARCHAR DEFAULT '', table_name VARCHAR DEFAULT '', PRIMARY KEY (resource, destination, db_schema, table_name, file));
CREATE TABLE IF NOT EXISTS schema_versions (resource VARCHAR, version INTEGER, schema_json VARCHAR, hash VARCHAR,
  created_at TIMESTAMPTZ, run_id VARCHAR, change VARCHAR, PRIMARY KEY (resource, version));
CREATE TABLE IF NOT EXISTS leases (resource VARCHAR PRIMARY KEY, run_id VARCHAR, pid INTEGER, host VARCHAR, started_at TIMESTAMPTZ, heartbeat_at TIMESTAMPTZ);
"""
_V1 = """SELECT count(*) = 0 AND (SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() AND table_name = $1) > 0
FROM duckdb_columns() WHERE database_name = current_database() AND table_name = $1 AND column_name = 'destination'"""
_TARGETED = {"state": 2, "files_seen": 4}  # tables keyed by target since 0.2: their statement in DDL
"""A store of version 0.1 keyed marks and seen files by resource alone: its rows keep their values, with an empty target (adopted by the next run)."""
DLQ_COLUMNS = ["_conduit_run_id", "_conduit_resource", "_conduit_source_file", "_conduit_row_number", "_conduit_check", "_conduit_error", "_conduit_loaded_at"]
LOCK_TIMEOUT_S = 60.0
_ALIAS = "conduit_store"
_ATTACH_LOCK = threading.RLock()  # one attach of the store at a time in this process
_LOCAL = threading.local()
_MEMORY: list[duckdb.DuckDBPyConnection] = []


CheckpointRow = tuple[str, str, int, int, str, int, str | None]
"""A chunk checkpoint: run_id, resource, chunk, rows, part, rows_read_end, incremental mark (JSON) or None."""


def _memory() -> duckdb.DuckDBPyConnection:
    """The process's in-memory DuckDB that store files are attached to."""
    import duckdb

    if not _MEMORY:
        _MEMORY.append(duckdb.connect(":memory:", config={"threads": 1}))
    return _MEMORY[0]


class Store:
    """The DuckDB file at ``path`` (created with its tables on first write)."""

    def __init__(self, path: Path):
        self.path = path
        self.dlq_dir = path.parent / ("dlq" if path.name == "conduit.duckdb" else f"{path.stem}.dlq")
        """Dead letters of this store's runs: ``dlq/`` beside the default ``conduit.duckdb``, ``<stem>.dlq/`` beside any other store file."""
        self._ready = False

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived connection; waits (up to a minute) while another process holds the file.

        The file is ATTACHed to one in-memory DuckDB per process and DETACHed after
        (which releases its lock): ~5 ms, where opening a database costs ~25 ms, and a
        run opens the store about ten times. Nested use on one thread shares the attach.
        """
        held = getattr(_LOCAL, "con", None)
        if held is not None:
            yield held
            return
        if not read_only and not self._ready:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        with _ATTACH_LOCK:
            con = _memory().cursor()
            self._attach(con, read_only)
            _LOCAL.con = con
            try:
                con.execute(f"USE {_ALIAS}")
                if not read_only and not self._ready:
                    _migrate(con)
                    con.execute(DDL)
                    self._ready = True
                yield con
            finally:
                _LOCAL.con = None
                try:
                    con.execute("USE memory")
                    con.execute(f"DETACH {_ALIAS}")
                finally:
                    con.close()

    def _attach(self, con: duckdb.DuckDBPyConnection, read_only: bool) -> None:
        import duckdb

        path = str(self.path).replace("'", "''")
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        delay = 0.02
        while True:
            try:
                con.execute(f"ATTACH '{path}' AS {_ALIAS}{' (READ_ONLY)' if read_only else ''}")
                return
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    con.close()
                    if "lock" in str(exc).lower():
                        msg = f"store {self.path} stayed locked for {LOCK_TIMEOUT_S:.0f}s"
                        raise StoreLocked(msg) from None
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    def _exec(self, sql: str, params: list[object] | None = None) -> None:
        with self.connect() as con:
            con.execute(sql, params or [])

    # --- runs ---------------------------------------------------------------------

    def start_run(self, run_id: str, config_path: str, config_hash: str, version: str) -> None:
        """Record a new run as ``running``."""
        self._exec("INSERT INTO runs VALUES (?, now(), NULL, 'running', ?, ?, ?, NULL)", [run_id, config_path, config_hash, version])

    def resume_run(self, run_id: str) -> None:
        """Mark an unfinished run as running again."""
        self._exec("UPDATE runs SET status = 'running', finished_at = NULL, error = NULL WHERE run_id = ?", [run_id])

    def finish_run(self, run_id: str, status: str, error: str | None = None) -> None:
        """Close a run with its final status."""
        self._exec("UPDATE runs SET finished_at = now(), status = ?, error = ? WHERE run_id = ?", [status, error, run_id])

    def interrupt_run(self, run_id: str) -> None:
        """Ctrl-C: the run and its resources still running become ``interrupted`` (resumable)."""
        with self.connect() as con:
            con.execute("UPDATE resource_runs SET status = 'interrupted', finished_at = now(), error = 'interrupted' WHERE run_id = ? AND status = 'running'", [run_id])
            con.execute("UPDATE runs SET finished_at = now(), status = 'interrupted', error = 'interrupted (Ctrl-C)' WHERE run_id = ?", [run_id])

    def unfinished_run(self, config_path: str, live: set[str] | frozenset[str] = frozenset()) -> str | None:
        """The newest run of this config left ``running`` (a crash) or ``interrupted`` (Ctrl-C), if any.

        Runs in ``live`` (their lease is held by a live process) are not unfinished but
        still going, and are skipped.
        """
        if not self.path.exists():
            return None
        with self.connect() as con:
            rows = con.execute("SELECT run_id FROM runs WHERE config_path = ? AND status IN ('running', 'interrupted') ORDER BY started_at DESC", [config_path]).fetchall()
        return next((r[0] for r in rows if r[0] not in live), None)

    def resource_status(self, run_id: str) -> dict[str, str]:
        """Status per resource recorded for a run."""
        with self.connect() as con:
            return dict(con.execute("SELECT resource, status FROM resource_runs WHERE run_id = ?", [run_id]).fetchall())

    # --- resource runs ------------------------------------------------------------

    def start_resource(self, run_id: str, resource: str, source: str, destination: str, table: str, write_mode: str, hwm_before: str | None) -> None:
        """Record a resource as ``running`` (replacing a row left by a crashed attempt)."""
        with self.connect() as con:
            con.execute("DELETE FROM resource_runs WHERE run_id = ? AND resource = ?", [run_id, resource])
            con.execute(
                "INSERT INTO resource_runs (run_id, resource, source, destination, table_name, write_mode, status, started_at, hwm_before, rows_read, rows_written, rows_dlq, rows_warned, bytes_read, rows_filtered) "
                "VALUES (?, ?, ?, ?, ?, ?, 'running', now(), ?, 0, 0, 0, 0, 0, 0)",
                [run_id, resource, source, destination, table, write_mode, hwm_before],
            )

    def finish_resource(self, run_id: str, resource: str, **fields: object) -> None:
        """Close a resource run: status, counts, timings, error."""
        duration, rows_read = fields.get("duration_s"), fields.get("rows_read")
        if isinstance(duration, int | float) and duration:
            fields["rows_per_s"] = (rows_read if isinstance(rows_read, int) else 0) / duration
        fields = {k: (json.dumps(v) if isinstance(v, dict | list) else v) for k, v in fields.items()}
        sets = ", ".join(f"{k} = ?" for k in fields)
        self._exec(
            f"UPDATE resource_runs SET {sets}, finished_at = now() WHERE run_id = ? AND resource = ?",
            [*fields.values(), run_id, resource],
        )

    def checkpoint_many(self, rows: list[CheckpointRow]) -> None:
        """Record staged chunks in one connection.

        Each row is ``(run_id, resource, chunk, rows, part, rows_read_end, mark)``; ``mark``
        is the incremental mark so far (JSON) or None.
        """
        with self.connect() as con:
            insert_many(con, "INSERT OR REPLACE INTO checkpoints SELECT c0, c1, c2, c3, now(), c4, c5, c6::VARCHAR FROM {rows}", rows)

    def set_checkpoints(self, run_id: str, resource: str, rows: list[CheckpointRow]) -> None:
        """Make ``rows`` (as in :meth:`checkpoint_many`) a run's only checkpoints of ``resource``.

        On resume the destination's durably staged chunks are the truth: the store may
        list chunks that never committed there (a load that commits only when it
        publishes) or whose rows were lost (then staging starts over).
        """
        with self.connect() as con:
            con.execute("DELETE FROM checkpoints WHERE run_id = ? AND resource = ?", [run_id, resource])
            if rows:
                self.checkpoint_many(rows)  # on this connection (nested use shares it)

    def checkpoints(self, run_id: str, resource: str) -> list[tuple[int, int, str, int, str | None]]:
        """(chunk, rows, part, rows_read_end, mark) of a run's resource, in chunk order."""
        with self.connect() as con:
            return con.execute("SELECT chunk, rows, part, rows_read_end, mark FROM checkpoints WHERE run_id = ? AND resource = ? ORDER BY chunk", [run_id, resource]).fetchall()

    def checkpointer(self, every_s: float = 1.0) -> Checkpointer:
        """A background writer of checkpoints for this store (see :class:`Checkpointer`)."""
        return Checkpointer(self, every_s)

    # --- incremental state --------------------------------------------------------

    def get_state(self, resource: str, target: tuple[str, str, str]) -> tuple[str | None, str | None, str | None, bool]:
        """(incremental column, value as text, value type, legacy) of a resource loading into ``target``.

        ``target`` is (destination, schema, table). A mark stored by an earlier version
        (no target) counts for whichever target asks first; ``legacy`` says so.
        """
        if not self.path.exists():
            return None, None, None, False
        with self.connect() as con:
            row = con.execute(
                "SELECT incremental_column, value, value_type, destination = '' FROM state WHERE resource = ? AND ((destination, db_schema, table_name) = (?, ?, ?) OR destination = '') ORDER BY destination = '' LIMIT 1",
                [resource, *target],
            ).fetchone()
        return (row[0], row[1], row[2], bool(row[3])) if row else (None, None, None, False)

    def set_state(self, resource: str, column: str, value: str | None, value_type: str, run_id: str, target: tuple[str, str, str]) -> None:
        """Store a resource's high-water mark for ``target`` (replacing a legacy one)."""
        with self.connect() as con:
            con.execute("DELETE FROM state WHERE resource = ? AND destination = ''", [resource])
            con.execute("INSERT OR REPLACE INTO state VALUES (?, ?, ?, ?, now(), ?, ?, ?, ?)", [resource, column, value, value_type, run_id, *target])
            con.execute("INSERT OR IGNORE INTO files_seen SELECT resource, file, run_id, seen_at, ?, ?, ? FROM files_seen WHERE resource = ? AND destination = ''", [*target, resource])
            con.execute("DELETE FROM files_seen WHERE resource = ? AND destination = ''", [resource])

    def reset_state(self, resource: str, target: tuple[str, str, str] | None = None) -> bool:
        """Forget a resource's high-water marks (only ``target``'s, and a legacy one, if given); True if there was one."""
        where, params = ("resource = ?", [resource]) if target is None else ("resource = ? AND ((destination, db_schema, table_name) = (?, ?, ?) OR destination = '')", [resource, *target])
        with self.connect() as con:
            rows = con.execute(f"DELETE FROM state WHERE {where} RETURNING resource", params).fetchall()
            con.execute(f"DELETE FROM files_seen WHERE {where}", params)
        return bool(rows)

    def seen_files(self, resource: str, target: tuple[str, str, str]) -> set[str]:
        """Files an earlier successful run of ``resource`` into ``target`` read (for NULL incremental values)."""
        if not self.path.exists():
            return set()
        with self.connect() as con:
            sql = "SELECT file FROM files_seen WHERE resource = ? AND ((destination, db_schema, table_name) = (?, ?, ?) OR destination = '')"
            return {r[0] for r in con.execute(sql, [resource, *target]).fetchall()}

    def add_seen_files(self, resource: str, files: list[str], run_id: str, target: tuple[str, str, str]) -> None:
        """Remember files read by a successful run into ``target``."""
        if files:
            with self.connect() as con:
                insert_many(con, "INSERT OR IGNORE INTO files_seen SELECT c0, c1, c2, now(), c3, c4, c5 FROM {rows}", [(resource, f, run_id, *target) for f in files])

    # --- schema versions ----------------------------------------------------------

    def record_schema(self, resource: str, schema_json: str, schema_hash: str, run_id: str, change: str) -> bool:
        """Add a schema version when the hash differs from the latest; True if added."""
        with self.connect() as con:
            row = con.execute("SELECT version, hash FROM schema_versions WHERE resource = ? ORDER BY version DESC LIMIT 1", [resource]).fetchone()
            if row and row[1] == schema_hash:
                return False
            version = (row[0] if row else 0) + 1
            con.execute("INSERT INTO schema_versions VALUES (?, ?, ?, ?, now(), ?, ?)", [resource, version, schema_json, schema_hash, run_id, change])
        return True

    # --- reading ------------------------------------------------------------------

    def query(self, sql: str) -> tuple[list[str], list[tuple[object, ...]]]:
        """Run read-only SQL; a ``dlq`` view covers every dead-letter file."""
        import duckdb

        if not self.path.exists():
            msg = f"no store yet at {self.path}: run `conduit run` first"
            raise ConfigError(msg)
        with self.connect(read_only=True) as con:
            self._dlq_view(con)
            try:
                cur = con.execute(sql)
            except duckdb.Error as exc:
                msg = f"query failed: {' '.join(str(exc).split())}"
                raise ConfigError(msg) from None
            columns = [d[0] for d in cur.description or []]
            return columns, cur.fetchall()

    def _dlq_view(self, con: duckdb.DuckDBPyConnection) -> None:
        files = sorted(self.dlq_dir.glob("*/*.parquet"))
        if files:
            listing = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
            con.execute(f"CREATE TEMP VIEW dlq AS SELECT * FROM read_parquet([{listing}], union_by_name = true)")
        else:
            cols = ", ".join(f"NULL::{'BIGINT' if c == '_conduit_row_number' else 'TIMESTAMPTZ' if c == '_conduit_loaded_at' else 'VARCHAR'} AS {c}" for c in DLQ_COLUMNS)
            con.execute(f"CREATE TEMP VIEW dlq AS SELECT {cols} WHERE false")


def _migrate(con: duckdb.DuckDBPyConnection) -> None:
    """Bring a store file created by an earlier version up to :data:`DDL`, keeping its rows."""
    for table, statement in _TARGETED.items():
        if con.execute(_V1, [table]).fetchone() == (True,):
            con.execute("BEGIN")
            con.execute(f"ALTER TABLE {table} RENAME TO {table}_v1")
            con.execute(DDL.split(";")[statement])
            con.execute(f"INSERT INTO {table} SELECT *, '', '', '' FROM {table}_v1")
            con.execute(f"DROP TABLE {table}_v1")
            con.execute("COMMIT")


def insert_many(con: duckdb.DuckDBPyConnection, statement: str, rows: Sequence[Sequence[object]]) -> None:
    """Run ``statement`` once over ``rows``, which it reads as the table ``{rows}`` with columns ``c0``, ``c1``...

    One statement over an Arrow table: ``executemany`` runs one per row (2-3 ms each,
    more while other threads hold the GIL), which made a load's final checkpoint write,
    one row per staged chunk, a serial tail of its own.

    >>> import duckdb
    >>> con = duckdb.connect()
    >>> _ = con.execute("CREATE TABLE t (a INTEGER, b VARCHAR)")
    >>> insert_many(con, "INSERT INTO t SELECT c0, c1::VARCHAR FROM {rows}", [(1, None), (2, "x")])
    >>> con.execute("SELECT * FROM t").fetchall()
    [(1, None), (2, 'x')]
    """
    import pyarrow as pa

    if not rows:
        return
    name = f"_conduit_rows_{threading.get_ident()}"
    con.register(name, pa.table({f"c{i}": list(column) for i, column in enumerate(zip(*rows, strict=True))}))
    try:
        con.execute(statement.format(rows=name))
    finally:
        con.unregister(name)


class Checkpointer:
    """Checkpoints written in order on a background thread, off the staging path.

    Each write opens (attaches) the store and commits; done between two chunks it stalls
    the destination. :meth:`add` queues a row and returns; rows queued within ``every_s``
    of the last write go together in the next one (each write costs CPU that the
    destination's own loading could use). :meth:`flush` writes at once, returns when every queued row is in
    the store and raises the writer's error, if any; call it before anything that reads
    the checkpoints back (publish, then resume's bookkeeping). A crash may lose queued
    rows: resume rebuilds them from the destination's own ledger.
    """

    def __init__(self, store: Store, every_s: float = 1.0):
        self._store = store
        self._every_s = every_s
        self._flushing = 0
        self._rows: list[CheckpointRow] = []
        self._busy = False
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, run_id: str, resource: str, chunk: int, rows: int, part: str, rows_read_end: int, mark: str | None) -> None:
        """Queue one checkpoint (a row of :meth:`Store.checkpoint_many`); raises an earlier write's error."""
        with self._cond:
            self._raise()
            self._rows.append((run_id, resource, chunk, rows, part, rows_read_end, mark))
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, daemon=True, name="conduit-checkpoint")
                self._thread.start()
            self._cond.notify_all()

    def _work(self) -> None:
        written = -float("inf")
        while True:
            with self._cond:
                while not self._rows:
                    self._cond.wait()
                self._cond.wait_for(lambda: self._flushing > 0, timeout=max(0.0, written + self._every_s - time.monotonic()))
                rows, self._rows, self._busy = self._rows, [], True
            try:
                self._store.checkpoint_many(rows)
            except BaseException as exc:  # noqa: BLE001 - raised by the next add or flush
                with self._cond:
                    self._error = self._error or exc
            written = time.monotonic()
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def flush(self) -> None:
        """Write every queued checkpoint now and wait until it is in; raise a write's error."""
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            try:
                while self._rows or self._busy:
                    self._cond.wait()
            finally:
                self._flushing -= 1
            self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error
