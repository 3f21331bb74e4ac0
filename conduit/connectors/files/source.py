"""CSV, NDJSON, JSON and Parquet files, local or any fsspec URL, as sources and destinations.

Sources list files with fsspec (so ``s3://`` and friends work the same as local
paths) and hand the engine one part per file: Polars lazy scans with a 1-based
``_conduit_row_number`` for JSON; for CSV and NDJSON a scan for the header or schema
and the type-inference sample, the rows themselves parsed block by block
(:mod:`conduit.connectors.files.blocks`); and Parquet row groups read with pyarrow
(:mod:`conduit.connectors.files.row_groups`; the engine numbers those rows). CSV columns
arrive as text and are typed by :mod:`conduit.coerce` from a large inferred sample or
the declared ``columns``, so a value that does not parse becomes a dead letter, never
a silent NULL.

On object stores the glob is listed afresh on every run (fsspec's listing cache is
dropped), so new objects are picked up; they are read with ranged requests (Parquet
row groups, CSV blocks), never downloading a whole object first.
The destinations live in :mod:`conduit.connectors.files.formats`.
"""

from __future__ import annotations

import codecs
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import polars as pl
import pyarrow as pa

from conduit.connectors.base import (
    RECHECK,
    ROW_NUMBER,
    Incremental,
    LocalFile,
    Part,
    PlannedPart,
    Source,
    Task,
)
from conduit.connectors.files.options import CsvOptions, CsvSourceOptions, FileSourceOptions, JsonOptions, JsonSourceOptions, ParquetSourceOptions
from conduit.connectors.files.storage import bucket, describe, filesystem, is_url, polars_storage_options
from conduit.errors import ConfigError, SourceError

_GLOB_CHARS = set("*?[")
_GZIP_MAGIC = b"\x1f\x8b"
_COMPRESSED = (".gz", ".gzip", ".bz2", ".zst", ".zstd", ".xz", ".lz4")
_UTF8 = {"utf-8", "utf8", "utf-8-sig", "utf8-sig"}


class FileSource(Source):
    """Base of the file sources: lists files, one :class:`Part` per file."""

    Options = FileSourceOptions
    format: ClassVar[str]
    extensions: ClassVar[tuple[str, ...]]

    def __init__(self, name: str, options: FileSourceOptions, project_dir: Path):
        super().__init__(name, options, project_dir)
        self.format_opts = options.options
        base = options.path
        self.base = base if is_url(base) else str(project_dir / os.path.expanduser(base))
        self.fs, _ = filesystem(self.base, options.storage_options, f"sources.{name}")

    def files(self, task: Task) -> list[tuple[str, int]]:
        """The files of ``task`` as (url, size), sorted, so resume sees the same order."""
        pattern = self.base.rstrip("/")
        if task.resource.path:
            pattern = f"{pattern}/{task.resource.path}"
        try:
            self.fs.invalidate_cache()  # a fresh listing every run: new objects are picked up
            if set(pattern) & _GLOB_CHARS:
                found = self.fs.glob(pattern, detail=True)
            elif self.fs.isdir(pattern):
                found = {p: i for p, i in self.fs.find(pattern, detail=True).items() if p.endswith(self.extensions)}
            elif self.fs.exists(pattern):
                found = {pattern: self.fs.info(pattern)}
            else:
                found = {}
        except Exception as exc:  # noqa: BLE001 - storage clients raise many types; one line each
            msg = f"{task.resource.name}: {describe(exc, f'list {pattern}')}"
            raise SourceError(msg) from None
        files = sorted((p, int(i.get("size") or 0)) for p, i in found.items() if i.get("type") != "directory")
        if not files:
            self.check()
            msg = f"{task.resource.name}: no {self.format} files match {pattern}"
            raise SourceError(msg)
        if is_url(self.base):
            scheme = self.base.split("://", 1)[0]
            files = [(f"{scheme}://{p}" if "://" not in p else p, s) for p, s in files]
        return files

    def parts(self, task: Task) -> Iterator[Part]:
        """One lazily scanned part per file (files with nothing above the incremental mark skipped)."""
        for url, size in self.files(task):
            if size == 0:
                msg = f"{task.resource.name}: {url} is empty (0 bytes, no header)"
                raise SourceError(msg)
            if task.incremental is not None and task.incremental.value is not None and self.nothing_newer(url, task.incremental):
                continue
            self._check_not_compressed(url)
            frame = self.scan(url)
            local = None if is_url(url) else LocalFile(self.format, url)
            yield Part(name=url, frame=frame, text_columns=self.format == "csv", bytes=size, local=local)

    def estimate_rows(self, task: Task) -> int | None:
        """CSV and NDJSON: from the file sizes and the first file's average line (:mod:`~conduit.connectors.files.estimate`); Parquet overrides."""
        if self.format not in ("csv", "ndjson"):
            return None
        from conduit.connectors.files.estimate import text_rows

        return text_rows(self.fs, self.files(task), header=self.format == "csv" and bool(getattr(self.format_opts, "header", True)))

    def plan_parts(self, task: Task) -> list[PlannedPart]:
        """The files :meth:`parts` would read, with their sizes (files with nothing above the mark left out)."""
        inc = task.incremental
        return [PlannedPart(url, size) for url, size in self.files(task) if inc is None or inc.value is None or not self.nothing_newer(url, inc)]

    def _check_not_compressed(self, url: str) -> None:
        """A text file whose name says uncompressed but whose first bytes are gzip's magic is refused, by name."""
        if self.format == "parquet" or url.lower().endswith(_COMPRESSED):
            return
        with self.fs.open(url, "rb") as fh:
            magic = fh.read(2)
        if magic == _GZIP_MAGIC:
            msg = f"file {url} is gzip-compressed; name it {url.rsplit('/', 1)[-1]}.gz"
            raise SourceError(msg)

    def nothing_newer(self, url: str, inc: Incremental) -> bool:
        """Whether file statistics prove no row is above the mark (only Parquet knows)."""
        return False

    def check(self) -> None:
        """The base path (and, on object stores, its bucket) must be reachable."""
        name = bucket(self.base)
        try:
            if name is not None and not self.fs.exists(name):
                msg = f"source {self.name}: bucket {name!r} does not exist or is not visible with these credentials ({self.base})"
                raise SourceError(msg)
            self.fs.exists(self.base)
        except SourceError:
            raise
        except Exception as exc:  # noqa: BLE001 - storage clients raise many types; one line each
            msg = f"source {self.name}: {describe(exc, f'reach {self.base}')}"
            raise SourceError(msg) from None

    @property
    def _storage(self) -> dict[str, str] | None:
        return polars_storage_options(self.options.storage_options, self.base)

    def scan(self, url: str) -> pl.LazyFrame:
        """The lazy scan of one file."""
        raise NotImplementedError


class CsvSource(FileSource):
    """``type: csv``."""

    Options = CsvSourceOptions
    format, extensions = "csv", (".csv", ".csv.gz", ".tsv", ".txt")

    def __init__(self, name: str, options: FileSourceOptions, project_dir: Path):
        super().__init__(name, options, project_dir)
        self._transcoded: dict[str, str] = {}
        self._raw_names: dict[str, list[str]] = {}  # url -> Polars' header names, where they differ from the cleaned ones
        self._headers: dict[bytes, tuple[list[str], list[str]]] = {}  # header line -> (Polars' names, cleaned names), for files alike

    def scan(self, url: str) -> pl.LazyFrame:
        """Every column as text; types come from :mod:`conduit.coerce`; short rows are marked.

        The scan gives the header and the type-inference sample; the rows themselves are
        read block by block (:mod:`conduit.connectors.files.blocks`, see :meth:`parts`).
        """
        from conduit.connectors.files import csv_tolerant, headers

        o: CsvOptions = self.format_opts  # type: ignore[assignment]
        source = self._utf8(url)
        storage = self._storage if is_url(source) else None
        first = self._header_line(source) if o.header and not o.skip_rows and not o.comment and not is_url(source) else None
        known = self._headers.get(first) if first is not None else None
        if known is not None:  # the same header line as an earlier file: its names, without reading the header twice more
            raw, cleaned = known
            if raw != cleaned:
                self._raw_names[url] = raw
            lf = pl.scan_csv(source, **_scan_options(o, header_known=True), schema=dict.fromkeys(cleaned, pl.String), row_index_name=ROW_NUMBER, row_index_offset=1)
            return csv_tolerant.finish(lf, cleaned, o.null_values)
        lf = pl.scan_csv(
            source,
            **_scan_options(o),
            row_index_name=ROW_NUMBER,  # the tolerant path resumes from a row number
            row_index_offset=1,
            storage_options=storage,
        )
        names = [c for c in lf.collect_schema() if c != ROW_NUMBER]
        if o.header and names:
            with open(source, "rb") if source != url else self.fs.open(url, "rb", compression="infer") as fh:
                cleaned = headers.read(fh, o, names)
            if len(cleaned) == len(names) and first is not None:
                self._headers[first] = (names, cleaned)
            if len(cleaned) == len(names) and cleaned != names:
                self._raw_names[url] = names
                lf, names = lf.rename(dict(zip(names, cleaned, strict=True))), cleaned
        return csv_tolerant.finish(lf, names, o.null_values) if names else lf

    def _header_line(self, path: str) -> bytes | None:
        """The first line of a local file when it surely is the whole header record (no quote in it), else None."""
        o: CsvOptions = self.format_opts  # type: ignore[assignment]
        try:
            with open(path, "rb") as fh:
                head = fh.read(1 << 16)
        except OSError:
            return None
        end = head.find(b"\n")
        line = head[: end + 1] if end >= 0 else b""
        if not line or (o.quote and o.quote.encode() in line):
            return None
        return line

    def _utf8(self, url: str) -> str:
        """``url``, or a temporary UTF-8 copy of it when the file has another encoding (made once)."""
        if self.format_opts.encoding.lower() in _UTF8:
            return url
        if url not in self._transcoded:
            self._transcoded[url] = _transcode(self.fs, url, self.format_opts.encoding)
        return self._transcoded[url]

    def parts(self, task: Task) -> Iterator[Part]:
        """One part per file, read in blocks; a file the fast reader rejects goes on through the tolerant path."""
        for part in super().parts(task):
            assert isinstance(part.frame, pl.LazyFrame)
            names = [c for c in part.frame.collect_schema() if not c.startswith("_conduit_")]
            if names:
                part.read = lambda after, size, types, url=part.name, n=names: self._blocks(url, n, after, size, types)
            part.fallback = self._fallback(part.name, names)
            yield part

    def read_many(self, urls: list[str]) -> pl.DataFrame | None:
        """Several whole small local files in one Polars read (the engine's groups of small files).

        Text columns, rows numbered per file (``_conduit_row_number``) and the file's
        position in ``urls`` (``_conduit_file``). None where the files cannot be read so
        (another encoding, renamed headers, headers that differ, a row the tolerant path
        must re-check, a read error): the engine then reads them one by one.
        """
        from conduit.connectors.files import csv_tolerant

        o: CsvOptions = self.format_opts  # type: ignore[assignment]
        if o.encoding.lower() not in _UTF8 or any(is_url(u) or u in self._raw_names for u in urls):
            return None
        path = "_conduit_path"
        try:
            df = pl.scan_csv(urls, **_scan_options(o), include_file_paths=path).collect()
        except (pl.exceptions.PolarsError, OSError):
            return None
        names = [c for c in df.columns if c != path]
        if not names:
            return None
        df = csv_tolerant.finish(df, names, o.null_values)
        if df.get_column(RECHECK).any():
            return None
        index = {u: i for i, u in enumerate(urls)}
        return (
            df.drop(RECHECK)
            .with_columns(
                (pl.int_range(pl.len(), dtype=pl.Int64).over(path) + 1).alias(ROW_NUMBER),
                pl.col(path).replace_strict(index, return_dtype=pl.UInt32).alias("_conduit_file"),
            )
            .drop(path)
        )

    def _blocks(self, url: str, names: list[str], after: int, batch_size: int, types: Mapping[str, pl.DataType] | None) -> Iterator[pl.DataFrame | pa.Table]:
        """The file's blocks (:func:`blocks.csv`), read under Polars' header names and given the cleaned ones."""
        from conduit.connectors.files import blocks

        source = self._utf8(url)
        raw = self._raw_names.get(url)
        cleaned = dict(zip(raw, names, strict=True)) if raw else {}
        if cleaned and types:
            types = {r: types[n] for r, n in cleaned.items() if n in types}
        with open(source, "rb") if source != url else self.fs.open(url, "rb", compression="infer") as fh:
            for frame in blocks.csv(fh, self.format_opts, raw or names, after, batch_size, source=url, types=types):
                if not cleaned:
                    yield frame
                elif isinstance(frame, pa.Table):  # a block Arrow typed
                    yield frame.rename_columns([cleaned.get(c, c) for c in frame.column_names])
                else:
                    yield frame.rename(cleaned)

    def _fallback(self, url: str, names: list[str]) -> Callable[[int, int], Iterator[pl.DataFrame]]:
        from conduit.connectors.files import csv_tolerant

        def read(after: int, batch_size: int) -> Iterator[pl.DataFrame]:
            with self.fs.open(url, "rb", compression="infer") as fh:
                yield from csv_tolerant.records(fh, self.format_opts, names, after, batch_size, source=url)

        return read


class NdjsonSource(FileSource):
    """``type: ndjson`` (one JSON object per line)."""

    Options = JsonSourceOptions
    format, extensions = "ndjson", (".ndjson", ".jsonl", ".json")

    def scan(self, url: str) -> pl.LazyFrame:
        """Polars' NDJSON scan; nested values stay structs/lists (JSON in the destination).

        When a bad line in the sample stops schema inference, the schema is inferred from
        the sample's valid lines instead (the bad lines are dead-lettered by the fallback).
        """
        from conduit.connectors.files import ndjson_tolerant

        o: JsonOptions = self.format_opts  # type: ignore[assignment]
        storage = self._storage if is_url(url) else None
        lf = pl.scan_ndjson(url, infer_schema_length=o.infer_rows, row_index_name=ROW_NUMBER, row_index_offset=1, storage_options=storage)
        try:
            lf.collect_schema()
        except pl.exceptions.PolarsError:
            try:
                found = ndjson_tolerant.schema(url, storage, o.infer_rows)
            except (pl.exceptions.PolarsError, OSError) as exc:
                raise SourceError(describe(exc, f"read {url}")) from None
            lf = pl.scan_ndjson(url, schema=found, row_index_name=ROW_NUMBER, row_index_offset=1, storage_options=storage)
        return lf

    def parts(self, task: Task) -> Iterator[Part]:
        """One part per file, read in blocks; a file the fast reader rejects goes on through the tolerant line path."""
        from conduit.connectors.files import ndjson_tolerant

        for part in super().parts(task):
            url, frame = part.name, part.frame
            assert isinstance(frame, pl.LazyFrame)
            file_schema = pl.Schema({k: v for k, v in frame.collect_schema().items() if k != ROW_NUMBER})
            if not file_schema.names():
                msg = f'{task.resource.name}: {url}: no line among the first {self.format_opts.infer_rows:,} is a JSON object (each line must be one object, e.g. {{"id": 1}})'
                raise SourceError(msg)
            storage = self._storage if is_url(url) else None
            part.read = lambda after, size, _types, url=url, s=file_schema: self._blocks(url, s, after, size)
            part.fallback = lambda after, size, url=url, s=file_schema, st=storage: ndjson_tolerant.records(url, st, s, after, size)
            yield part

    def _blocks(self, url: str, schema: pl.Schema, after: int, batch_size: int) -> Iterator[pl.DataFrame]:
        from conduit.connectors.files import blocks

        with self.fs.open(url, "rb", compression="infer") as fh:
            yield from blocks.ndjson(fh, schema, after, batch_size, source=url)


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

    def scan(self, url: str) -> Any:
        """Row group by row group (:mod:`conduit.connectors.files.row_groups`): bounded memory, cheap resume."""
        import pyarrow as pa

        from conduit.connectors.files.row_groups import RowGroups

        try:
            return RowGroups(self.fs, url)
        except (OSError, pa.ArrowException) as exc:
            raise SourceError(describe(exc, f"read {url}")) from None

    def nothing_newer(self, url: str, inc: Incremental) -> bool:
        """True when every row group's max of the column is below the mark (or equal, unless inclusive) and it has no NULLs."""
        import pyarrow.parquet as pq

        with self.fs.open(url, "rb") as fh:
            meta = pq.ParquetFile(fh).metadata
        names = [meta.schema.column(i).name for i in range(meta.num_columns)]
        if inc.column not in names:
            return False
        idx = names.index(inc.column)
        for rg in range(meta.num_row_groups):
            stats = meta.row_group(rg).column(idx).statistics
            if stats is None or not stats.has_min_max or stats.null_count or stats.null_count is None:
                return False
            try:
                if stats.max > inc.value or (inc.inclusive and stats.max == inc.value):
                    return False
            except TypeError:
                return False
        return True

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
    with fs.open(url, "rb", compression="infer") as src, out:
        while block := src.read(8 << 20):
            out.write(decoder.decode(block).encode("utf-8"))
        out.write(decoder.decode(b"", final=True).encode("utf-8"))
    return out.name


FileFormat = Literal["csv", "ndjson", "json", "parquet"]


def _scan_options(o: CsvOptions, header_known: bool = False) -> dict[str, Any]:
    """``pl.scan_csv`` keywords every CSV scan shares: every value as text, nothing inferred, nothing NULLed.

    ``header_known``: the names are given as a schema, the header line is skipped as read.
    """
    shared: dict[str, Any] = {"separator": o.delimiter, "quote_char": o.quote, "empty_string_is_null": False, "glob": False, "raise_if_empty": False}
    if header_known:
        return {**shared, "has_header": True}
    return {**shared, "has_header": o.header, "infer_schema": False, "comment_prefix": o.comment, "skip_rows": o.skip_rows}
