"""Snowflake destination: Parquet files -> ``PUT`` to a stage -> ``COPY INTO`` -> atomic publish.

Each chunk's batches become zstd Parquet files (tens of MiB) uploaded with ``PUT`` to
an internal stage while the next file is written; one transaction then runs ``COPY
INTO`` the load's TRANSIENT staging table and inserts the chunk's ``_CONDUIT_CHUNKS``
ledger row, so a resumed run never stages a chunk twice. Publish, per write mode:

- new table: create it typed, then one transaction inserts the rows and the
  ``_CONDUIT_LOADS`` row;
- ``append``: one transaction, ``INSERT ... SELECT`` plus the load row;
- ``replace``: a fully built table is swapped in (``ALTER TABLE ... SWAP WITH``,
  atomic); a comment naming the load makes a retried publish see the swap happened;
- ``merge``: one ``MERGE`` (atomic, and idempotent: re-running it changes nothing),
  then the load row. Of several staged rows per key, the largest ``_conduit_seq`` wins.

The driver (adbc-driver-snowflake) is imported lazily.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from conduit import _secrets
from conduit.config import Strict
from conduit.connectors.base import SEQ, Capabilities, Connector, Destination, Load, StagedChunk
from conduit.connectors.warehouses import snowflake_sql as sql
from conduit.connectors.warehouses.parquet_upload import MIB, write_files
from conduit.errors import ConnectionFailed, DestinationError

if TYPE_CHECKING:
    import pyarrow as pa

    from conduit.schema import Change

LOADS, CHUNKS = "_conduit_loads", "_conduit_chunks"
_LEDGERS = {
    CHUNKS: 'LOAD_ID VARCHAR, CHUNK NUMBER(10,0), PART VARCHAR, ROWS_READ_END NUMBER(19,0), "ROWS" NUMBER(19,0)',
    LOADS: 'LOAD_ID VARCHAR, RUN_ID VARCHAR, RESOURCE VARCHAR, TABLE_NAME VARCHAR, WRITE_MODE VARCHAR, "ROWS" NUMBER(19,0), PUBLISHED_AT TIMESTAMP_TZ',
}


class SnowflakeOptions(Strict):
    """Keys of a Snowflake destination (a ``connection_string`` or the separate keys)."""

    connection_string: str | None = None
    account: str | None = None
    user: str | None = None
    password: str | None = None
    private_key_path: str | None = None
    private_key_passphrase: str | None = None
    warehouse: str | None = None
    database: str | None = None
    db_schema: str = "PUBLIC"
    role: str | None = None
    host: str | None = None
    port: int | None = None
    protocol: str | None = None
    stage: str = "_conduit_stage"
    login_timeout_s: int = Field(default=60, gt=0)


def clean_message(exc: BaseException) -> str:
    """The driver's message as one readable line, secrets masked."""
    text = " ".join(str(exc).split())
    text = re.sub(r"^[A-Z_]+: (\[Snowflake\] )?", "", text)
    text = re.sub(r"^(\d{6} \(\w{5}\): )+", "", text)
    text = re.sub(r"\.? Vendor code: -?\d+\. SQLSTATE: \w+$", "", text)
    return _secrets.redact(text)


def db_kwargs(o: SnowflakeOptions) -> dict[str, str]:
    """ADBC database options for the separate connection keys (not ``connection_string``)."""
    kw: dict[str, str] = {"adbc.snowflake.sql.client_option.login_timeout": f"{o.login_timeout_s}s"}
    pairs = {
        "adbc.snowflake.sql.account": o.account,
        "username": o.user,
        "password": o.password,
        "adbc.snowflake.sql.warehouse": o.warehouse,
        "adbc.snowflake.sql.db": o.database,
        "adbc.snowflake.sql.schema": sql.name(o.db_schema),
        "adbc.snowflake.sql.role": o.role,
        "adbc.snowflake.sql.uri.host": o.host,
        "adbc.snowflake.sql.uri.port": str(o.port) if o.port else None,
        "adbc.snowflake.sql.uri.protocol": o.protocol,
    }
    kw.update({k: v for k, v in pairs.items() if v})
    if o.private_key_path:
        kw["adbc.snowflake.sql.auth_type"] = "auth_jwt"
        if o.private_key_passphrase:
            kw["adbc.snowflake.sql.client_option.jwt_private_key_pkcs8_value"] = Path(o.private_key_path).expanduser().read_text()
            kw["adbc.snowflake.sql.client_option.jwt_private_key_pkcs8_password"] = o.private_key_passphrase
        else:
            kw["adbc.snowflake.sql.client_option.jwt_private_key"] = str(Path(o.private_key_path).expanduser())
    return kw


class SnowflakeDestination(Destination):
    """``type: snowflake``."""

    Options = SnowflakeOptions
    capabilities = Capabilities(parallel_stage=1)

    def __init__(self, name: str, options: SnowflakeOptions, project_dir: Path):
        super().__init__(name, options, project_dir)
        for secret in (options.password, options.private_key_passphrase, _secrets.uri_password(options.connection_string or "")):
            _secrets.register(secret)
        self._conn: Any = None
        self._ready: set[str] = set()

    # --- connection and statements ------------------------------------------------

    @property
    def conn(self) -> Any:
        """The ADBC connection (autocommit; explicit BEGIN/COMMIT where needed)."""
        if self._conn is None:
            import adbc_driver_snowflake.dbapi as sf

            o = self.options
            try:
                if o.connection_string:
                    self._conn = sf.connect(o.connection_string, db_kwargs={"adbc.snowflake.sql.client_option.login_timeout": f"{o.login_timeout_s}s"}, autocommit=True)
                else:
                    self._conn = sf.connect(db_kwargs=db_kwargs(o), autocommit=True)
            except Exception as exc:  # noqa: BLE001 - any driver failure is a failed connection
                msg = f"destination {self.name}: cannot connect to Snowflake: {clean_message(exc)}"
                raise ConnectionFailed(msg) from None
        return self._conn

    def _run(self, statement: str, params: list[object] | None = None, what: str = "statement") -> list[tuple[Any, ...]]:
        """Run one statement; any driver error becomes one :class:`DestinationError` line."""
        cur = self.conn.cursor()
        try:
            cur.execute(statement, params) if params is not None else cur.execute(statement)
            return cur.fetchall() if cur.description else []
        except Exception as exc:  # noqa: BLE001 - converted to a typed error below
            msg = f"destination {self.name}: {what} failed: {clean_message(exc)}"
            raise DestinationError(msg, sqlstate=getattr(exc, "sqlstate", None)) from None
        finally:
            cur.close()

    def _transaction(self, statements: list[tuple[str, list[object] | None]], what: str) -> list[list[tuple[Any, ...]]]:
        """Run DML statements in one transaction (rolled back on any error)."""
        self._run("BEGIN", what=what)
        try:
            results = [self._run(s, p, what) for s, p in statements]
            self._run("COMMIT", what=what)
        except BaseException:
            with contextlib.suppress(DestinationError):
                self._run("ROLLBACK", what=what)
            raise
        return results

    def check(self) -> None:
        """Connect and run ``SELECT 1``."""
        self._run("SELECT 1", what="connection check")

    def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def describe(self) -> str:
        """Account and schema, no secrets."""
        where = self.options.account or self.options.host or "connection_string"
        return f"snowflake:{where}/{self.options.database or ''}/{self.options.db_schema}"

    # --- names ---------------------------------------------------------------------

    def default_table(self, resource: str) -> str:
        """``<db_schema>.<resource>``."""
        return f"{self.options.db_schema}.{resource}"

    def _ref(self, table: str) -> str:
        return sql.table_ref(table, self.options.db_schema, self.options.database)

    def _meta(self, table: str) -> str:
        return self._ref(f"{self.options.db_schema}.{table}")

    def _stage_ref(self) -> str:
        return self._meta(self.options.stage)

    def _load_table(self, load: Load, kind: str) -> str:
        """A per-load helper table: ``stage`` in the destination's schema, ``new`` beside the target."""
        schema = (load.table.rpartition(".")[0] if kind == "new" else "") or self.options.db_schema
        return self._ref(f"{schema}._conduit_{kind}_{re.sub(r'[^A-Za-z0-9_]', '_', load.load_id)}".lower())

    def _prefix(self, load: Load) -> str:
        return re.sub(r"[^A-Za-z0-9_]", "_", load.load_id)

    def _ensure(self, schema: str | None = None) -> None:
        """Create (once per run) the ledger tables, the stage, and ``schema``."""
        if "meta" not in self._ready:
            self._run(f"CREATE SCHEMA IF NOT EXISTS {self._schema_ref(self.options.db_schema)}", what="creating the schema")
            for ledger, columns in _LEDGERS.items():
                self._run(f"CREATE TABLE IF NOT EXISTS {self._meta(ledger)} ({columns})", what=f"creating {ledger}")
            self._run(f"CREATE STAGE IF NOT EXISTS {self._stage_ref()}", what="creating the stage")
            self._ready.add("meta")
        if schema and schema not in self._ready:
            self._run(f"CREATE SCHEMA IF NOT EXISTS {self._schema_ref(schema)}", what="creating the schema")
            self._ready.add(schema)

    def _schema_ref(self, schema: str) -> str:
        return ".".join(sql.ident(p) for p in ([self.options.database] if self.options.database else []) + [schema])

    # --- schema ----------------------------------------------------------------------

    def _exists(self, table: str) -> bool:
        return self._table_info(table) is not None

    def _table_info(self, table: str) -> str | None:
        """The table's comment ('' when none) if it exists, else None."""
        schema, _, bare = table.rpartition(".")
        db = f"{sql.ident(self.options.database)}." if self.options.database else ""
        rows = self._run(f"SELECT COMMENT FROM {db}INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?", [sql.name(schema or self.options.db_schema), sql.name(bare)], "reading the catalog")
        return (rows[0][0] or "") if rows else None

    def table_schema(self, table: str) -> pa.Schema | None:
        """Arrow schema of an existing table (names as Conduit shows them), or None."""
        import pyarrow as pa

        schema, _, bare = table.rpartition(".")
        db = f"{sql.ident(self.options.database)}." if self.options.database else ""
        cur = self.conn.cursor()
        try:  # SELECT *: stand-ins lack some columns (DATETIME_PRECISION)
            cur.execute(f"SELECT * FROM {db}INFORMATION_SCHEMA.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION", [sql.name(schema or self.options.db_schema), sql.name(bare)])
            names = [d[0].upper() for d in cur.description]
            rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        except Exception as exc:  # noqa: BLE001 - converted to a typed error
            msg = f"destination {self.name}: reading the catalog failed: {clean_message(exc)}"
            raise DestinationError(msg) from None
        finally:
            cur.close()
        if not rows:
            return None
        fields = [(r["COLUMN_NAME"], sql.arrow_type(r["DATA_TYPE"], r.get("NUMERIC_PRECISION"), r.get("NUMERIC_SCALE"), r.get("DATETIME_PRECISION"))) for r in rows]
        return pa.schema([pa.field(sql.arrow_name(n), t) for n, t in fields])

    def sql_type(self, arrow_type: pa.DataType, json: bool = False) -> str:
        """The Snowflake column type."""
        return sql.sql_type(arrow_type, json)

    def ddl_for(self, table: str, change: Change) -> str | None:
        """``ALTER TABLE`` for an added or widened column."""
        if change.source_type is None or change.kind not in ("add_column", "widen"):
            return None
        verb = "ADD COLUMN" if change.kind == "add_column" else "ALTER COLUMN"
        kind = "" if change.kind == "add_column" else "SET DATA TYPE "
        return f"ALTER TABLE {self._ref(table)} {verb} {sql.ident(change.column)} {kind}{sql.sql_type(change.source_type)};"

    def evolve(self, table: str, changes: list[Change]) -> None:
        """Apply the changes (each ALTER is atomic on its own; DDL cannot share a transaction)."""
        for statement in filter(None, (self.ddl_for(table, c) for c in changes)):
            self._run(statement.rstrip(";"), what=f"changing the schema of {table}")

    # --- stage -------------------------------------------------------------------------

    def staged(self, load: Load) -> list[StagedChunk]:
        """Chunks in the ledger for this load."""
        self._ensure()
        rows = self._run(f'SELECT CHUNK, PART, ROWS_READ_END, "ROWS" FROM {self._meta(CHUNKS)} WHERE LOAD_ID = ? ORDER BY CHUNK', [load.load_id], "reading the chunk ledger")
        return [StagedChunk(int(r[0]), str(r[1]), int(r[2]), int(r[3])) for r in rows]

    def stage(self, load: Load, chunk: StagedChunk, batches: pa.RecordBatchReader) -> int:
        """Write Parquet files, PUT them (overlapping), then COPY + ledger row in one transaction."""
        schema = batches.schema
        names = [sql.name(f.name) for f in schema]
        if len({n.upper() for n in names}) != len(names):
            msg = f"destination {self.name}: column names collide in Snowflake (case-insensitive): {', '.join(f.name for f in schema)}"
            raise DestinationError(msg)
        json_columns = set(load.json_columns)
        self._ensure(load.table.rpartition(".")[0] or self.options.db_schema)
        stage_table = self._load_table(load, "stage")
        self._run(f"CREATE TRANSIENT TABLE IF NOT EXISTS {stage_table} ({sql.columns_ddl(schema, json_columns, stage=True)})", what=f"creating the staging table for {load.resource}")
        prefix = f"{self._prefix(load)}/c{chunk.chunk}_{uuid.uuid4().hex[:8]}"

        def upload(path: Path) -> None:
            self._run(sql.put(str(path), self._stage_ref(), prefix), what=f"uploading {path.name}")
            path.unlink()

        with tempfile.TemporaryDirectory(prefix="conduit-snowflake-") as tmp:
            target = int(min(load.options.file_size_mb, 512) * MIB)
            written = write_files(batches, Path(tmp), upload, target_bytes=target, names=names, compression=load.options.compression or "zstd")
        ledger = (f'INSERT INTO {self._meta(CHUNKS)} (LOAD_ID, CHUNK, PART, ROWS_READ_END, "ROWS") VALUES (?, ?, ?, ?, ?)', [load.load_id, chunk.chunk, chunk.part, chunk.rows_read_end, written.rows])
        if not written.files:
            self._transaction([ledger], f"staging {load.resource}")
            return 0
        results = self._transaction([(sql.copy_into(stage_table, self._stage_ref(), prefix), None), ledger], f"loading {load.resource} (COPY INTO)")
        loaded = sum(int(r[3] or 0) for r in results[0] if len(r) > 3)
        if results[0] and loaded != written.rows:
            msg = f"destination {self.name}: COPY INTO loaded {loaded:,} of {written.rows:,} rows of {load.resource}"
            raise DestinationError(msg)
        return written.rows

    # --- publish ------------------------------------------------------------------------

    def is_published(self, load: Load) -> bool:
        """Whether the load id is in ``_CONDUIT_LOADS``."""
        self._ensure()
        return bool(self._run(f"SELECT COUNT(*) FROM {self._meta(LOADS)} WHERE LOAD_ID = ?", [load.load_id], "reading the load ledger")[0][0])

    def _record(self, load: Load, rows: int) -> tuple[str, list[object]]:
        return (
            f'INSERT INTO {self._meta(LOADS)} (LOAD_ID, RUN_ID, RESOURCE, TABLE_NAME, WRITE_MODE, "ROWS", PUBLISHED_AT) VALUES (?, ?, ?, ?, ?, ?, CURRENT_TIMESTAMP())',
            [load.load_id, load.run_id, load.resource, load.table, load.write_mode, rows],
        )

    def _forget_chunks(self, load: Load) -> tuple[str, list[object]]:
        return (f"DELETE FROM {self._meta(CHUNKS)} WHERE LOAD_ID = ?", [load.load_id])

    def publish(self, load: Load) -> int:
        """Make the staged rows visible at once, per write mode; idempotent per load id."""
        if self.is_published(load):
            return 0
        if load.changes and load.write_mode != "replace":
            self.evolve(load.table, load.changes)  # warehouse DDL commits on its own: applied just before the data
        fields = [f for f in load.schema or [] if f.name != SEQ]
        columns = [f.name for f in fields]
        json_columns = set(load.json_columns)
        target, stage_table = self._ref(load.table), self._load_table(load, "stage")
        staged = self.staged(load)
        if not staged or not sum(c.rows for c in staged):
            return self._publish_empty(load, fields, json_columns)
        what = f"publishing {load.resource} into {load.table}"
        comment = self._table_info(load.table)
        marker = f"conduit load {load.load_id}"
        import pyarrow as pa

        typed = sql.columns_ddl(pa.schema(fields), json_columns, stage=False)
        if comment is None:
            self._ensure(load.table.rpartition(".")[0] or self.options.db_schema)
            self._run(f"CREATE TABLE IF NOT EXISTS {target} ({typed})", what=what)
        if load.write_mode == "replace" and comment is not None:
            if comment != marker:  # not swapped yet (a retry after the swap only records the load)
                new_table = self._load_table(load, "new")
                self._run(f"CREATE OR REPLACE TABLE {new_table} ({typed})", what=what)
                self._run(sql.insert_select(new_table, stage_table, columns, json_columns), what=what)
                statements = sql.replace_statements(target, new_table, marker)
                for statement in statements[:2]:
                    self._run(statement, what=what)
            rows = sum(c.rows for c in staged)
            self._transaction([self._record(load, rows), self._forget_chunks(load)], what)
            self._cleanup(load)
            return rows
        if load.write_mode == "merge":  # one MERGE: atomic, and a retry of it changes nothing
            result = self._run(sql.merge(target, stage_table, columns, load.primary_keys, json_columns, SEQ), what=what)
            rows = int(sum(int(v or 0) for v in result[0])) if result else 0
            self._transaction([self._record(load, rows), self._forget_chunks(load)], what)
        else:
            insert = (sql.insert_select(target, stage_table, columns, json_columns), None)
            result = self._transaction([insert, self._record(load, 0), self._forget_chunks(load)], what)[0]
            rows = int(result[0][0] or 0) if result else 0
        self._cleanup(load)
        return rows

    def _publish_empty(self, load: Load, fields: list[pa.Field], json_columns: set[str]) -> int:
        """Nothing staged: create an empty target (emptied for replace) if there is a schema."""
        import pyarrow as pa

        what = f"publishing {load.resource} into {load.table}"
        statements: list[tuple[str, list[object] | None]] = []
        if fields:
            exists = self._exists(load.table)
            if not exists:
                self._ensure(load.table.rpartition(".")[0] or self.options.db_schema)
                self._run(f"CREATE TABLE IF NOT EXISTS {self._ref(load.table)} ({sql.columns_ddl(pa.schema(fields), json_columns, stage=False)})", what=what)
            elif load.write_mode == "replace":
                statements.append((f"DELETE FROM {self._ref(load.table)}", None))
        self._transaction([*statements, self._record(load, 0), self._forget_chunks(load)], what)
        self._cleanup(load)
        return 0

    def _cleanup(self, load: Load) -> None:
        """Drop the load's helper tables and stage files (after the publish committed)."""
        for kind in ("stage", "new") if load.table else ("stage",):
            self._run(f"DROP TABLE IF EXISTS {self._load_table(load, kind)}", what=f"dropping the {kind} table of {load.resource}")
        with contextlib.suppress(DestinationError):  # files of failed COPYs only (COPY purges loaded ones)
            self._run(f"REMOVE @{self._stage_ref()}/{self._prefix(load)}/", what="removing staged files")

    def abort(self, load: Load) -> None:
        """Drop the staging tables, the ledger rows and the staged files."""
        self._ensure()
        self._run(*self._forget_chunks(load), what=f"aborting {load.resource}")
        self._cleanup(load)


CONNECTOR = Connector("snowflake", None, SnowflakeDestination, extra="snowflake", requires=("adbc_driver_snowflake", "adbc_driver_manager"))
