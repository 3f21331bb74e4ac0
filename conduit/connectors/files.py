"""CSV, NDJSON, JSON and Parquet files, local or any fsspec URL, as sources and destinations.

Sources list files with fsspec (so ``s3://`` and friends work the same as local
paths) and hand Polars lazy scans to the engine, one part per file, with a 1-based
``_conduit_row_number``. CSV columns arrive as text and are typed by
:mod:`conduit.coerce` from a large inferred sample or the declared ``columns``, so a
value that does not parse becomes a dead letter, never a silent NULL.

Destinations write each chunk to files under ``<path>/_conduit_staging/<load id>/``
and move them to ``<path>/<table>/`` on publish, recording the load in
``<path>/_conduit_loads/<load id>.json``.
"""

from __future__ import annotations

import codecs
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import fsspec
import polars as pl
from pydantic import Field

from conduit.config import DEFAULT_BATCH_SIZE, Strict
from conduit.connectors.base import (
    ROW_NUMBER,
    Capabilities,
    Connector,
    Destination,
    Load,
    Part,
    Source,
    StagedChunk,
    Task,
)
from conduit.errors import ConfigError, DestinationError, SourceError

if TYPE_CHECKING:
    import pyarrow as pa

_GLOB_CHARS = set("*?[")
_UTF8 = {"utf-8", "utf8", "utf-8-sig", "utf8-sig"}


class CsvOptions(Strict):
    """``options:`` of a CSV source."""

    delimiter: str = Field(default=",", min_length=1, max_length=1)
    quote: str | None = '"'
    encoding: str = "utf-8"
    header: bool = True
    null_values: list[str] = Field(default_factory=list)
    infer_rows: int = Field(default=100_000, gt=0)
    comment: str | None = None
    skip_rows: int = Field(default=0, ge=0)


class JsonOptions(Strict):
    """``options:`` of an NDJSON / JSON source."""

    infer_rows: int = Field(default=10_000, gt=0)


class ParquetOptions(Strict):
    """``options:`` of a Parquet source (none yet)."""


class FileSourceOptions(Strict):
    """Keys of a file source."""

    path: str = "."
    storage_options: dict[str, Any] = Field(default_factory=dict)
    options: Any = None


class CsvSourceOptions(FileSourceOptions):
    """Keys of a CSV source."""

    options: CsvOptions = Field(default_factory=CsvOptions)


class JsonSourceOptions(FileSourceOptions):
    """Keys of an NDJSON / JSON source."""

    options: JsonOptions = Field(default_factory=JsonOptions)


class ParquetSourceOptions(FileSourceOptions):
    """Keys of a Parquet source."""

    options: ParquetOptions = Field(default_factory=ParquetOptions)


class FileDestinationOptions(Strict):
    """Keys of a file destination (table-shaped keys are handled by the config)."""

    path: str
    storage_options: dict[str, Any] = Field(default_factory=dict)


def is_url(path: str) -> bool:
    """Whether ``path`` names a remote fsspec location (``s3://...``) rather than a local file."""
    return "://" in path and not path.startswith("file://")


def polars_storage_options(storage_options: dict[str, Any]) -> dict[str, str] | None:
    """fsspec-style ``storage_options`` translated to the object-store keys Polars takes."""
    if not storage_options:
        return None
    rename = {"key": "aws_access_key_id", "secret": "aws_secret_access_key", "token": "aws_session_token", "endpoint_url": "aws_endpoint_url"}
    out = {rename.get(k, k): str(v) for k, v in storage_options.items() if k != "client_kwargs"}
    if out.get("aws_endpoint_url", "").startswith("http://"):
        out.setdefault("aws_allow_http", "true")
    region = (storage_options.get("client_kwargs") or {}).get("region_name")
    if region:
        out.setdefault("aws_region", region)
    return out


class FileSource(Source):
    """Base of the file sources: lists files, one :class:`Part` per file."""

    Options = FileSourceOptions
    format: ClassVar[str]
    extensions: ClassVar[tuple[str, ...]]

    def __init__(self, name: str, options: FileSourceOptions, project_dir: Any):
        super().__init__(name, options, project_dir)
        self.format_opts = options.options
        base = options.path
        self.base = base if is_url(base) else str(project_dir / os.path.expanduser(base))
        self.fs, _ = fsspec.core.url_to_fs(self.base, **options.storage_options)

    def files(self, task: Task) -> list[tuple[str, int]]:
        """The files of ``task`` as (url, size), sorted, so resume sees the same order."""
        pattern = self.base.rstrip("/")
        if task.resource.path:
            pattern = f"{pattern}/{task.resource.path}"
        try:
            if set(pattern) & _GLOB_CHARS:
                found = self.fs.glob(pattern, detail=True)
            elif self.fs.isdir(pattern):
                found = {p: i for p, i in self.fs.find(pattern, detail=True).items() if p.endswith(self.extensions)}
            elif self.fs.exists(pattern):
                found = {pattern: self.fs.info(pattern)}
            else:
                found = {}
        except OSError as exc:
            msg = f"{task.resource.name}: cannot list {pattern}: {exc}"
            raise SourceError(msg) from None
        files = sorted((p, int(i.get("size") or 0)) for p, i in found.items() if i.get("type") != "directory")
        if not files:
            msg = f"{task.resource.name}: no {self.format} files match {pattern}"
            raise SourceError(msg)
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        if protocol not in ("file", "local"):
            files = [(f"{protocol}://{p}" if "://" not in p else p, s) for p, s in files]
        return files

    def parts(self, task: Task) -> Iterator[Part]:
        """One lazily scanned part per file."""
        for url, size in self.files(task):
            if size == 0:
                msg = f"{task.resource.name}: {url} is empty (0 bytes, no header)"
                raise SourceError(msg)
            yield Part(name=url, frame=self.scan(url), text_columns=self.format == "csv", bytes=size)

    def estimate_rows(self, task: Task) -> int | None:
        """Row estimate from Parquet metadata (exact) or file size (rough)."""
        return None

    def check(self) -> None:
        """The base path must be reachable."""
        try:
            self.fs.exists(self.base)
        except OSError as exc:
            msg = f"source {self.name}: cannot reach {self.base}: {exc}"
            raise SourceError(msg) from None

    @property
    def _storage(self) -> dict[str, str] | None:
        return polars_storage_options(self.options.storage_options)

    def scan(self, url: str) -> pl.LazyFrame:
        """The lazy scan of one file."""
        raise NotImplementedError


class CsvSource(FileSource):
    """``type: csv``."""

    Options = CsvSourceOptions
    format, extensions = "csv", (".csv", ".csv.gz", ".tsv", ".txt")

    def scan(self, url: str) -> pl.LazyFrame:
        """Every column as text; types come from :mod:`conduit.coerce`."""
        o: CsvOptions = self.format_opts  # type: ignore[assignment]
        source = url
        if o.encoding.lower() not in _UTF8:
            source = _transcode(self.fs, url, o.encoding)
        return pl.scan_csv(
            source,
            separator=o.delimiter,
            quote_char=o.quote,
            has_header=o.header,
            infer_schema=False,
            null_values=o.null_values or None,
            empty_string_is_null=False,
            comment_prefix=o.comment,
            skip_rows=o.skip_rows,
            row_index_name=ROW_NUMBER,
            row_index_offset=1,
            glob=False,
            storage_options=self._storage if is_url(source) else None,
            raise_if_empty=False,
        )


class NdjsonSource(FileSource):
    """``type: ndjson`` (one JSON object per line)."""

    Options = JsonSourceOptions
    format, extensions = "ndjson", (".ndjson", ".jsonl", ".json")

    def scan(self, url: str) -> pl.LazyFrame:
        """Polars' NDJSON scan; nested values stay structs/lists (JSON in the destination)."""
        o: JsonOptions = self.format_opts  # type: ignore[assignment]
        return pl.scan_ndjson(url, infer_schema_length=o.infer_rows, row_index_name=ROW_NUMBER, row_index_offset=1, storage_options=self._storage if is_url(url) else None)


class JsonSource(FileSource):
    """``type: json`` (a top-level array of objects; read whole, so keep files moderate)."""

    Options = JsonSourceOptions
    format, extensions = "json", (".json",)

    def scan(self, url: str) -> pl.LazyFrame:
        """The whole array as one frame."""
        o: JsonOptions = self.format_opts  # type: ignore[assignment]
        with self.fs.open(url, "rb") as fh:
            df = pl.read_json(fh, infer_schema_length=o.infer_rows)
        return df.lazy().with_row_index(ROW_NUMBER, offset=1).with_columns(pl.col(ROW_NUMBER).cast(pl.Int64))


class ParquetSource(FileSource):
    """``type: parquet``."""

    Options = ParquetSourceOptions
    format, extensions = "parquet", (".parquet", ".parq", ".pq")

    batch_rows: int = DEFAULT_BATCH_SIZE

    def parts(self, task: Task) -> Iterator[Part]:
        """One part per file, read in batches of the resource's ``batch_size``."""
        self.batch_rows = task.resource.batch_size or DEFAULT_BATCH_SIZE
        yield from super().parts(task)

    def scan(self, url: str) -> Any:
        """A RecordBatchReader over the row groups (pyarrow reads one batch at a time).

        Bounded memory: a Polars streaming scan reads ahead of a slow consumer (a
        database COPY) by hundreds of MiB; this reader holds one row group. The
        engine numbers the rows.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        fh = self.fs.open(url, "rb") if is_url(url) else None
        try:
            pf = pq.ParquetFile(fh if fh is not None else url)
        except (pa.ArrowException, OSError) as exc:
            if fh is not None:
                fh.close()
            msg = f"cannot read {url}: {' '.join(str(exc).split())[:300]}"
            raise SourceError(msg) from None

        def batches() -> Iterator[pa.RecordBatch]:
            try:
                yield from pf.iter_batches(batch_size=self.batch_rows)
            finally:
                pf.close()
                if fh is not None:
                    fh.close()

        return pa.RecordBatchReader.from_batches(pf.schema_arrow, batches())

    def estimate_rows(self, task: Task) -> int | None:
        """Exact row count from the footers."""
        import pyarrow.parquet as pq

        total = 0
        for url, _ in self.files(task):
            with self.fs.open(url, "rb") as fh:
                total += pq.ParquetFile(fh).metadata.num_rows
        return total


def _transcode(fs: Any, url: str, encoding: str) -> str:
    """Stream a non-UTF-8 file into a temporary UTF-8 copy, block by block."""
    try:
        decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    except LookupError:
        msg = f"unknown encoding {encoding!r}"
        raise ConfigError(msg) from None
    out = tempfile.NamedTemporaryFile("wb", suffix=".csv", prefix="conduit-", delete=False)  # noqa: SIM115
    with fs.open(url, "rb") as src, out:
        while block := src.read(8 << 20):
            out.write(decoder.decode(block).encode("utf-8"))
        out.write(decoder.decode(b"", final=True).encode("utf-8"))
    return out.name


# --- destinations ------------------------------------------------------------------


@dataclass
class _Writer:
    """Rolls files of about ``limit`` bytes for one chunk."""

    dest: FileDestination
    load: Load
    chunk: int
    limit: int
    n: int = 0
    handle: Any = None
    writer: Any = None
    rows: int = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if self.handle is None:
            self._open(batch.schema)
        self.dest.write_batch(self.writer, self.handle, batch)
        self.rows += batch.num_rows
        if self.handle.tell() >= self.limit:
            self.close()

    def _open(self, schema: pa.Schema) -> None:
        path = f"{self.dest.staging(self.load)}/part-{self.load.load_id}-{self.chunk:05d}-{self.n:03d}.{self.dest.ext}"
        self.n += 1
        self.handle = self.dest.fs.open(path, "wb")
        self.writer = self.dest.open_writer(self.handle, schema, self.load)

    def close(self) -> None:
        if self.handle is not None:
            self.dest.close_writer(self.writer)
            self.handle.close()
        self.writer = self.handle = None


class FileDestination(Destination):
    """Base of the file destinations; subclasses write one format."""

    Options = FileDestinationOptions
    capabilities = Capabilities(write_modes=frozenset({"append", "replace"}), schema_evolution=False)
    ext: ClassVar[str]

    def __init__(self, name: str, options: FileDestinationOptions, project_dir: Any):
        super().__init__(name, options, project_dir)
        self.root = options.path if is_url(options.path) else str(project_dir / os.path.expanduser(options.path))
        self.fs, _ = fsspec.core.url_to_fs(self.root, **options.storage_options)
        self.root = self.root.rstrip("/")

    def check(self) -> None:
        """The destination folder's parent must exist (the folder itself is created)."""
        parent = self.root.rsplit("/", 1)[0]
        try:
            if not is_url(self.root) and not self.fs.isdir(parent):
                msg = f"destination {self.name}: folder {parent} does not exist"
                raise DestinationError(msg)
            self.fs.makedirs(self.root, exist_ok=True)
        except OSError as exc:
            msg = f"destination {self.name}: cannot write to {self.root}: {exc}"
            raise DestinationError(msg) from None

    def staging(self, load: Load) -> str:
        """The staging folder of a load."""
        return f"{self.root}/_conduit_staging/{load.load_id}"

    def table_dir(self, table: str) -> str:
        """Where a table's files live."""
        return f"{self.root}/{table.replace('.', '/')}"

    def _data_files(self, folder: str) -> list[str]:
        if not self.fs.isdir(folder):
            return []
        return sorted(p for p in self.fs.ls(folder, detail=False) if p.endswith(f".{self.ext}"))

    def table_schema(self, table: str) -> pa.Schema | None:
        """Schema of the first file in the table folder."""
        files = self._data_files(self.table_dir(table))
        return self.read_schema(files[0]) if files else None

    def read_schema(self, path: str) -> pa.Schema | None:
        """Schema of one file (None where the format does not carry one)."""
        return None

    def staged(self, load: Load) -> list[StagedChunk]:
        """Chunks whose ledger file exists."""
        ledger = f"{self.staging(load)}/_chunks"
        if not self.fs.isdir(ledger):
            return []
        out = []
        for p in sorted(self.fs.ls(ledger, detail=False)):
            with self.fs.open(p, "r") as fh:
                out.append(StagedChunk(**json.load(fh)))
        return out

    def stage(self, load: Load, chunk: StagedChunk, batches: pa.RecordBatchReader) -> int:
        """Write the chunk's files, then its ledger entry (the commit point)."""
        self.check()
        self.fs.makedirs(f"{self.staging(load)}/_chunks", exist_ok=True)
        writer = _Writer(self, load, chunk.chunk, int(load.options.file_size_mb * 1024 * 1024))
        try:
            for batch in batches:
                writer.write(batch)
        finally:
            writer.close()
        with self.fs.open(f"{self.staging(load)}/_chunks/{chunk.chunk:05d}.json", "w") as fh:
            json.dump({**chunk.__dict__, "rows": writer.rows}, fh)
        return writer.rows

    def _load_marker(self, load: Load) -> str:
        return f"{self.root}/_conduit_loads/{load.load_id}.json"

    def is_published(self, load: Load) -> bool:
        """Whether the load's marker exists."""
        return bool(self.fs.exists(self._load_marker(load)))

    def publish(self, load: Load) -> int:
        """Move staged files into the table folder; for replace, then remove the old ones."""
        if self.is_published(load):
            return 0
        target = self.table_dir(load.table)
        self.fs.makedirs(target, exist_ok=True)
        old = self._data_files(target)
        staged = self._data_files(self.staging(load))
        moved = []
        for path in staged:
            dest = f"{target}/{path.rsplit('/', 1)[1]}"
            self.fs.mv(path, dest)
            moved.append(dest)
        if load.write_mode == "replace":
            for path in old:
                if path not in moved:
                    self.fs.rm(path)
        rows = sum(c.rows for c in self.staged(load))
        self.fs.makedirs(f"{self.root}/_conduit_loads", exist_ok=True)
        with self.fs.open(self._load_marker(load), "w") as fh:
            json.dump({"load_id": load.load_id, "run_id": load.run_id, "table": load.table, "files": moved, "rows": rows}, fh)
        self.abort(load)
        return rows

    def abort(self, load: Load) -> None:
        """Remove the staging folder."""
        if self.fs.exists(self.staging(load)):
            self.fs.rm(self.staging(load), recursive=True)

    def open_writer(self, handle: Any, schema: pa.Schema, load: Load) -> Any:
        """A format writer over an open binary file."""
        raise NotImplementedError

    def write_batch(self, writer: Any, handle: Any, batch: pa.RecordBatch) -> None:
        """Write one batch."""
        writer.write_batch(batch)

    def close_writer(self, writer: Any) -> None:
        """Finish a file."""
        writer.close()


class ParquetDestination(FileDestination):
    """``type: parquet`` (zstd by default)."""

    ext = "parquet"

    def open_writer(self, handle: Any, schema: pa.Schema, load: Load) -> Any:
        """A ParquetWriter with the load's compression."""
        import pyarrow.parquet as pq

        return pq.ParquetWriter(handle, schema, compression=load.options.compression or "zstd")

    def read_schema(self, path: str) -> pa.Schema | None:
        """The Parquet footer schema."""
        import pyarrow.parquet as pq

        with self.fs.open(path, "rb") as fh:
            return pq.read_schema(fh)


class CsvDestination(FileDestination):
    """``type: csv`` (header, comma, RFC 4180 quoting)."""

    ext = "csv"

    def open_writer(self, handle: Any, schema: pa.Schema, load: Load) -> Any:
        """pyarrow's streaming CSV writer."""
        import pyarrow.csv as pacsv

        return pacsv.CSVWriter(handle, schema)


class NdjsonDestination(FileDestination):
    """``type: ndjson`` (one JSON object per line)."""

    ext = "ndjson"

    def open_writer(self, handle: Any, schema: pa.Schema, load: Load) -> Any:
        """NDJSON needs no writer state."""
        return None

    def write_batch(self, writer: Any, handle: Any, batch: pa.RecordBatch) -> None:
        """Polars serialises the batch."""
        handle.write(pl.from_arrow(batch).write_ndjson().encode())  # type: ignore[union-attr]

    def close_writer(self, writer: Any) -> None:
        """Nothing to finish."""


FileFormat = Literal["csv", "ndjson", "json", "parquet"]
CSV = Connector("csv", CsvSource, CsvDestination)
NDJSON = Connector("ndjson", NdjsonSource, NdjsonDestination)
JSON = Connector("json", JsonSource, None)
PARQUET = Connector("parquet", ParquetSource, ParquetDestination)
