"""The keys of the file sources: ``path``, ``storage_options`` and each format's ``options:``."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from conduit.config import Strict


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
