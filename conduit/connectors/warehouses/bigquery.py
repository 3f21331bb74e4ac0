"""BigQuery destination: Parquet load jobs into per-chunk staging tables, one publish job.

Each chunk's batches become zstd Parquet files loaded (free batch load jobs, while the
next file is written) into the chunk's own table ``_conduit_stage_<load>_c<N>``; the
first file truncates it, so re-staging a chunk after a crash never doubles rows. Its row
in ``_conduit_chunks`` is written after the load; a chunk without a ledger row is
simply staged again. Publish is one query job per write mode, each atomic on its own:
``CREATE TABLE ... AS`` (new table), ``CREATE OR REPLACE TABLE ... AS`` (replace),
``INSERT ... SELECT`` (append), ``MERGE`` on ``primary_keys`` (largest ``_conduit_seq``
wins). The job has a deterministic id, so a publish retried after a crash finds its
finished job instead of running it twice; then the load id goes into ``_conduit_loads``.

With ``api_endpoint`` and no ``credentials_path`` the client uses anonymous credentials
(emulators). google-cloud-bigquery is imported lazily.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import Field

from conduit import _secrets
from conduit.config import Strict
from conduit.connectors.base import SEQ, Capabilities, Connector, Destination, Load, StagedChunk
from conduit.connectors.warehouses import bigquery_sql as sql
from conduit.connectors.warehouses.parquet_upload import MIB, write_files
from conduit.errors import ConnectionFailed, DestinationError

if TYPE_CHECKING:
    import pyarrow as pa
    from google.cloud import bigquery

    from conduit.schema import Change

LEDGERS = {
    "_conduit_chunks": [("load_id", "STRING"), ("chunk", "INT64"), ("part", "STRING"), ("rows_read_end", "INT64"), ("rows", "INT64")],
    "_conduit_loads": [("load_id", "STRING"), ("run_id", "STRING"), ("resource", "STRING"), ("table_name", "STRING"), ("write_mode", "STRING"), ("rows", "INT64"), ("published_at", "TIMESTAMP")],
}


class BigQueryOptions(Strict):
    """Keys of a BigQuery destination."""

    project: str
    dataset: str
    location: str | None = None
    credentials_path: str | None = None
    api_endpoint: str | None = None
    timeout_s: float = Field(default=60.0, gt=0)


def clean_message(exc: BaseException) -> str:
    """The API's message as one line (no job id / location trailer), secrets masked."""
    text = getattr(exc, "message", None) or str(exc)
    text = text.split("\n\nLocation:")[0]
    text = re.sub(r"^(GET|POST|PUT|PATCH|DELETE) \S+: ", "", " ".join(text.split()))
    code = getattr(exc, "code", None)
    return _secrets.redact(f"{text} (HTTP {code})" if code else text)


_T = TypeVar("_T")


class BigQueryDestination(Destination):
    """``type: bigquery``."""

    Options = BigQueryOptions
    capabilities = Capabilities(parallel_stage=1)

    def __init__(self, name: str, options: BigQueryOptions, project_dir: Path):
        super().__init__(name, options, project_dir)
        self._client: bigquery.Client | None = None
        self._ready = False

    @property
    def client(self) -> bigquery.Client:
        """The BigQuery client (anonymous credentials for an emulator endpoint)."""
        if self._client is None:
            from google.api_core.client_options import ClientOptions
            from google.cloud import bigquery

            o = self.options
            kw: dict[str, Any] = {"project": o.project, "location": o.location}
            if o.api_endpoint:
                kw["client_options"] = ClientOptions(api_endpoint=o.api_endpoint)
            try:
                if o.credentials_path:
                    from google.oauth2 import service_account

                    kw["credentials"] = service_account.Credentials.from_service_account_file(str(Path(o.credentials_path).expanduser()))
                elif o.api_endpoint:
                    from google.auth.credentials import AnonymousCredentials

                    kw["credentials"] = AnonymousCredentials()
                self._client = bigquery.Client(**kw)
            except Exception as exc:  # noqa: BLE001 - credentials/ADC problems are connection failures
                msg = f"destination {self.name}: cannot create a BigQuery client for project {o.project}: {clean_message(exc)}"
                raise ConnectionFailed(msg) from None
        return self._client

    def _call(self, what: str, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Call the API; any failure becomes one :class:`DestinationError` line."""
        try:
            return fn(*args, **kwargs)
        except DestinationError:
            raise
        except Exception as exc:  # noqa: BLE001 - converted to a typed error
            raise self._error(what, exc) from None

    def _error(self, what: str, exc: BaseException) -> DestinationError:
        """One line for an API failure; 403 says it is a permission problem."""
        code = getattr(exc, "code", None)
        hint = " (permission denied: check the credentials' roles)" if code == 403 else ""
        msg = f"destination {self.name}: {what} failed{hint}: {clean_message(exc)}"
        return (ConnectionFailed if code is None and isinstance(exc, OSError) else DestinationError)(msg)

    def _query(self, statement: str, params: list[tuple[str, str, Any]] | None = None, what: str = "query", job_id: str | None = None) -> list[Any]:
        from google.cloud import bigquery

        cfg = bigquery.QueryJobConfig(query_parameters=[bigquery.ScalarQueryParameter(n, t, v) for n, t, v in params or []])

        def run() -> list[Any]:
            if job_id is None:
                return list(self.client.query(statement, job_config=cfg).result())
            return list(self.client.query(statement, job_config=cfg, job_id=job_id, job_retry=None).result(job_retry=None))

        return self._call(what, run)

    def check(self) -> None:
        """The dataset must exist and be readable."""
        from google.api_core.exceptions import NotFound

        try:
            from google.cloud.bigquery import DEFAULT_RETRY

            t = self.options.timeout_s
            self.client.get_dataset(f"{self.options.project}.{self.options.dataset}", retry=DEFAULT_RETRY.with_deadline(t), timeout=t)
        except NotFound:
            msg = f"destination {self.name}: dataset {self.options.project}.{self.options.dataset} not found (create it, or check project and location)"
            raise DestinationError(msg) from None
        except Exception as exc:  # noqa: BLE001 - converted to a typed error
            raise self._error("reading the dataset", exc) from None

    def close(self) -> None:
        """Close the client's HTTP session."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def describe(self) -> str:
        """Project and dataset."""
        return f"bigquery:{self.options.project}.{self.options.dataset}"

    # --- names ---------------------------------------------------------------------

    def default_table(self, resource: str) -> str:
        """``<dataset>.<resource>``."""
        return f"{self.options.dataset}.{resource}"

    def _path(self, table: str) -> str:
        """``project.dataset.table`` for ``table``, ``dataset.table`` or ``project.dataset.table``."""
        parts = table.split(".")
        if len(parts) == 1:
            parts = [self.options.dataset, *parts]
        if len(parts) == 2:
            parts = [self.options.project, *parts]
        return ".".join(parts)

    def _ref(self, table: str) -> str:
        return ".".join(sql.quote(p) for p in self._path(table).split("."))

    def _slug(self, load: Load) -> str:
        return re.sub(r"[^A-Za-z0-9_]", "_", load.load_id)

    def _chunk_table(self, load: Load, chunk: int) -> str:
        return f"{self.options.dataset}._conduit_stage_{self._slug(load)}_c{chunk}"

    def _ensure(self) -> None:
        """Check the dataset and create the ledger tables (once per run)."""
        if self._ready:
            return
        from google.cloud import bigquery

        self.check()
        for name, columns in LEDGERS.items():
            table = bigquery.Table(self._path(f"{self.options.dataset}.{name}"), schema=[bigquery.SchemaField(c, t) for c, t in columns])
            self._call(f"creating {name}", self.client.create_table, table, exists_ok=True)
        self._ready = True

    # --- schema ----------------------------------------------------------------------

    def _table(self, table: str) -> bigquery.Table | None:
        from google.api_core.exceptions import NotFound

        try:
            return self.client.get_table(self._path(table))
        except NotFound:
            return None
        except Exception as exc:  # noqa: BLE001 - converted to a typed error
            raise self._error(f"reading table {table}", exc) from None

    def table_schema(self, table: str) -> pa.Schema | None:
        """Arrow schema of an existing table, or None."""
        import pyarrow as pa

        self._ensure()
        found = self._table(table)
        return None if found is None else pa.schema([pa.field(f.name, sql.arrow_type(f)) for f in found.schema])

    def sql_type(self, arrow_type: pa.DataType, json: bool = False) -> str:
        """The BigQuery column type."""
        return sql.field_type(arrow_type, json)

    def ddl_for(self, table: str, change: Change) -> str | None:
        """``ALTER TABLE`` for an added column or a widened NUMERIC."""
        if change.source_type is None or change.kind not in ("add_column", "widen"):
            return None
        kind = sql.field_type(change.source_type)
        if change.kind == "add_column":
            return f"ALTER TABLE {self._ref(table)} ADD COLUMN {sql.quote(change.column)} {kind};"
        return f"ALTER TABLE {self._ref(table)} ALTER COLUMN {sql.quote(change.column)} SET DATA TYPE {kind};"

    def evolve(self, table: str, changes: list[Change]) -> None:
        """Apply the changes (one DDL statement each)."""
        for statement in filter(None, (self.ddl_for(table, c) for c in changes)):
            self._query(statement, what=f"changing the schema of {table}")

    # --- stage -------------------------------------------------------------------------

    def staged(self, load: Load) -> list[StagedChunk]:
        """Chunks in ``_conduit_chunks`` for this load."""
        self._ensure()
        rows = self._query(
            f"SELECT chunk, part, rows_read_end, `rows` FROM {self._ref(self.options.dataset + '._conduit_chunks')} WHERE load_id = @load ORDER BY chunk",
            [("load", "STRING", load.load_id)],
            "reading the chunk ledger",
        )
        latest = {int(r[0]): StagedChunk(int(r[0]), str(r[1]), int(r[2]), int(r[3])) for r in rows}  # a re-staged chunk counts once
        return [latest[k] for k in sorted(latest)]

    def stage(self, load: Load, chunk: StagedChunk, batches: pa.RecordBatchReader) -> int:
        """Load the chunk's Parquet files into its own table, then write its ledger row."""
        import pyarrow as pa
        from google.cloud import bigquery

        self._ensure()
        json_columns = set(load.json_columns)
        target_schema = pa.schema([f.with_type(sql.bq_ready(f.type)) for f in batches.schema])
        schema = [sql.schema_field(f, json_columns, stage=True) for f in target_schema]
        destination = self._path(self._chunk_table(load, chunk.chunk))
        first = [True]

        def upload(path: Path) -> None:
            cfg = bigquery.LoadJobConfig(source_format="PARQUET", schema=schema, write_disposition="WRITE_TRUNCATE" if first[0] else "WRITE_APPEND")
            options = bigquery.ParquetOptions()
            options.enable_list_inference = True
            cfg.parquet_options = options
            with path.open("rb") as fh:
                self._call(f"loading {load.resource} (load job)", lambda: self.client.load_table_from_file(fh, destination, job_config=cfg).result())
            first[0] = False
            path.unlink()

        def prepare(batch: pa.RecordBatch) -> pa.RecordBatch:
            return batch if batch.schema == target_schema else batch.cast(target_schema, safe=False)

        with tempfile.TemporaryDirectory(prefix="conduit-bigquery-") as tmp:
            target = int(min(load.options.file_size_mb, 1024) * MIB)
            written = write_files(batches, Path(tmp), upload, target_bytes=target, compression=load.options.compression or "zstd", prepare=prepare)
        self._query(
            f"INSERT INTO {self._ref(self.options.dataset + '._conduit_chunks')} (load_id, chunk, part, rows_read_end, `rows`) VALUES (@load, @chunk, @part, @end, @rows)",
            [("load", "STRING", load.load_id), ("chunk", "INT64", chunk.chunk), ("part", "STRING", chunk.part), ("end", "INT64", chunk.rows_read_end), ("rows", "INT64", written.rows)],
            f"recording chunk {chunk.chunk} of {load.resource}",
        )
        return written.rows

    # --- publish ------------------------------------------------------------------------

    def is_published(self, load: Load) -> bool:
        """Whether the load id is in ``_conduit_loads``."""
        self._ensure()
        rows = self._query(f"SELECT COUNT(*) FROM {self._ref(self.options.dataset + '._conduit_loads')} WHERE load_id = @load", [("load", "STRING", load.load_id)], "reading the load ledger")
        return bool(rows[0][0])

    def _job_done(self, job_id: str) -> bool | None:
        """True if the job exists and succeeded, False if it exists and failed, None if absent."""
        from google.api_core.exceptions import NotFound

        try:
            job = self.client.get_job(job_id)
        except NotFound:
            return None
        except Exception:  # noqa: BLE001 - treat as absent; running the job reports real problems
            return None
        return job.state == "DONE" and job.error_result is None

    def publish(self, load: Load) -> int:
        """One atomic query job per write mode (deterministic job id), then the load record."""
        if self.is_published(load):
            return 0
        if load.changes and load.write_mode != "replace":
            self.evolve(load.table, load.changes)  # warehouse DDL commits on its own: applied just before the data
        fields = [f for f in load.schema or [] if f.name != SEQ]
        columns, json_columns = [f.name for f in fields], set(load.json_columns)
        staged = self.staged(load)
        chunks = [c for c in staged if c.rows]
        target = self._ref(load.table)
        what = f"publishing {load.resource} into {load.table}"
        rows = sum(c.rows for c in chunks)
        if not chunks:
            statement = self._empty_statement(load, fields, json_columns)
        else:
            source = sql.union([self._ref(self._chunk_table(load, c.chunk)) for c in chunks])
            exists = self._table(load.table) is not None
            if load.write_mode == "merge":
                keys = ", ".join(f"`{k}`" for k in load.primary_keys)
                rows = int(self._query(f"SELECT COUNT(*) FROM (SELECT DISTINCT {keys} FROM ({source}))", what=what)[0][0])  # rows after last-row-wins
                if exists:
                    statement = sql.merge(target, source, columns, load.primary_keys, json_columns, SEQ)
                else:
                    statement = sql.create_as(target, sql.dedup(source, load.primary_keys, SEQ), columns, json_columns, replace=False)
            elif load.write_mode == "replace" or not exists:
                statement = sql.create_as(target, source, columns, json_columns, replace=load.write_mode == "replace")
            else:
                statement = sql.insert(target, source, columns, json_columns)
        if statement:
            target_slug = re.sub(r"[^A-Za-z0-9_]", "_", self._path(load.table))
            self._run_once(statement, f"conduit_{target_slug}_{self._slug(load)}_publish"[-900:], what)
        self._query(
            f"INSERT INTO {self._ref(self.options.dataset + '._conduit_loads')} (load_id, run_id, resource, table_name, write_mode, `rows`, published_at) VALUES (@load, @run, @resource, @table, @mode, @rows, CURRENT_TIMESTAMP())",
            [
                ("load", "STRING", load.load_id),
                ("run", "STRING", load.run_id),
                ("resource", "STRING", load.resource),
                ("table", "STRING", load.table),
                ("mode", "STRING", load.write_mode),
                ("rows", "INT64", rows),
            ],
            what,
        )
        self._cleanup(load, staged)
        return rows

    def _run_once(self, statement: str, base_id: str, what: str) -> None:
        """Run ``statement`` unless an earlier attempt's job (same deterministic id) succeeded."""
        for attempt in range(1, 100):
            job_id = f"{base_id}_{attempt}"
            state = self._job_done(job_id)
            if state is True:
                return
            if state is None:
                self._query(statement, what=what, job_id=job_id)
                return
        msg = f"destination {self.name}: {what} failed: too many failed attempts"
        raise DestinationError(msg)

    def _empty_statement(self, load: Load, fields: list[pa.Field], json_columns: set[str]) -> str | None:
        """Nothing staged: create the (emptied, for replace) target from the schema."""
        if not fields or (load.write_mode != "replace" and self._table(load.table) is not None):
            return None
        columns = ", ".join(f"{sql.quote(f.name)} {_ddl_type(sql.schema_field(f, json_columns))}" for f in fields)
        verb = "CREATE OR REPLACE TABLE" if load.write_mode == "replace" else "CREATE TABLE IF NOT EXISTS"
        return f"{verb} {self._ref(load.table)} ({columns})"

    def _cleanup(self, load: Load, staged: list[StagedChunk]) -> None:
        """Forget the chunks and drop their tables (after the publish is recorded)."""
        self._query(f"DELETE FROM {self._ref(self.options.dataset + '._conduit_chunks')} WHERE load_id = @load", [("load", "STRING", load.load_id)], f"cleaning up {load.resource}")
        for c in staged:
            self._call("dropping a staging table", self.client.delete_table, self._path(self._chunk_table(load, c.chunk)), not_found_ok=True)

    def abort(self, load: Load) -> None:
        """Drop the load's chunk tables and ledger rows."""
        self._ensure()
        prefix = f"_conduit_stage_{self._slug(load)}_c"
        tables = self._call("listing staging tables", lambda: [t.table_id for t in self.client.list_tables(f"{self.options.project}.{self.options.dataset}")])
        staged = [StagedChunk(int(t[len(prefix) :]), "", 0, 0) for t in tables if t.startswith(prefix) and t[len(prefix) :].isdigit()]
        self._cleanup(load, staged)


def _ddl_type(field: bigquery.SchemaField) -> str:
    """A ``SchemaField`` as a DDL type (``ARRAY<...>``, ``STRUCT<...>``, ``NUMERIC(p, s)``)."""
    kind = field.field_type
    if kind == "RECORD":
        kind = "STRUCT<" + ", ".join(f"{sql.quote(f.name)} {_ddl_type(f)}" for f in field.fields) + ">"
    elif field.precision is not None:
        kind = f"{kind}({field.precision}, {field.scale or 0})"
    return f"ARRAY<{kind}>" if field.mode == "REPEATED" else kind


CONNECTOR = Connector("bigquery", None, BigQueryDestination, extra="bigquery", requires=("google.cloud.bigquery",))
