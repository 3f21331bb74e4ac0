"""The file destinations of each format: Parquet, CSV and NDJSON writers over :class:`FileDestination`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conduit.connectors.files.destination import TEXT_CODECS, FileDestination
from conduit.errors import ConfigError

if TYPE_CHECKING:
    import pyarrow as pa

    from conduit.connectors.base import Load

_PARQUET_CODECS = {"zstd", "snappy", "gzip", "brotli", "lz4", "none"}


class _TextDestination(FileDestination):
    """CSV / NDJSON: ``compression`` gzip, zstd, bz2 or lz4 compresses each file (``.csv.gz``)."""

    def manifest(self, table: str) -> str:
        """The table's manifest (outside its folder, so directory scans see only data files)."""
        return f"{self.root}/_conduit_tables/{table}.json"

    def suffix(self, load: Load) -> str:
        """``csv`` or ``csv.gz`` etc."""
        codec = (load.options.compression or "none").lower()
        return self.ext if codec == "none" else f"{self.ext}.{TEXT_CODECS[codec]}"

    def wrap(self, raw: Any, load: Load) -> Any:
        """A pyarrow compressed stream over the raw file."""
        codec = (load.options.compression or "none").lower()
        if codec == "none":
            return raw
        import pyarrow as pa

        return pa.CompressedOutputStream(raw, codec)


class ParquetDestination(FileDestination):
    """``type: parquet`` (zstd by default)."""

    ext = "parquet"

    def validate(self, load: Load) -> None:
        """Parquet codecs: zstd (default), snappy, gzip, brotli, lz4, none."""
        codec = (load.options.compression or "zstd").lower()
        if codec not in _PARQUET_CODECS:
            msg = f"destination {self.name}: compression {load.options.compression!r} is not a Parquet codec; use one of {', '.join(sorted(_PARQUET_CODECS))}"
            raise ConfigError(msg)

    def open_writer(self, handle: Any, schema: pa.Schema, load: Load) -> Any:
        """A ParquetWriter with the load's compression."""
        import pyarrow.parquet as pq

        return pq.ParquetWriter(handle, schema, compression=(load.options.compression or "zstd").lower())

    def read_schema(self, path: str) -> pa.Schema | None:
        """The Parquet footer schema."""
        import pyarrow.parquet as pq

        with self.fs.open(path, "rb") as fh:
            return pq.read_schema(fh)


class CsvDestination(_TextDestination):
    """``type: csv`` (header, comma, RFC 4180 quoting)."""

    ext = "csv"

    def open_writer(self, handle: Any, schema: pa.Schema, load: Load) -> Any:
        """pyarrow's streaming CSV writer."""
        import pyarrow.csv as pacsv

        return pacsv.CSVWriter(handle, schema)


class NdjsonDestination(_TextDestination):
    """``type: ndjson`` (one JSON object per line)."""

    ext = "ndjson"

    def open_writer(self, handle: Any, schema: pa.Schema, load: Load) -> Any:
        """NDJSON needs no writer state."""
        return None

    def write_batch(self, writer: Any, handle: Any, batch: pa.RecordBatch) -> None:
        """Polars serialises the batch."""
        import polars as pl

        handle.write(pl.from_arrow(batch).write_ndjson().encode())  # type: ignore[union-attr]

    def close_writer(self, writer: Any) -> None:
        """Nothing to finish."""
