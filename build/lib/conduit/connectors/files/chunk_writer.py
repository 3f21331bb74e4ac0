"""One chunk's batches written as files: rolled at a size limit, split into hive partitions.

The file format is the destination's business (a :class:`FileFormat`, the file
destination, opens, writes and closes a format writer on a stream); this module decides which file each batch's
rows go to: ``<folder>part-<load id>-<chunk>-<n>.<ext>`` under the load's staging
folder, a new ``n`` whenever a file reaches the limit, and with ``partition_by`` one
``col=value/`` folder per distinct key (at most ``MAX_OPEN_FILES`` open at once).

Examples
--------
>>> import pyarrow as pa
>>> batch = pa.record_batch({"day": ["b", "a", None, "a"], "v": [1, 2, 3, 4]})
>>> [(folder, part.column("v").to_pylist()) for folder, part in split_partitions(batch, ["day"])]
[('day=a/', [2, 4]), ('day=b/', [1]), ('day=__HIVE_DEFAULT_PARTITION__/', [3])]
"""

from __future__ import annotations

import urllib.parse
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from conduit.connectors.files.storage import is_url
from conduit.errors import ConfigError

if TYPE_CHECKING:
    import pyarrow as pa

    from conduit.connectors.base import Load

MAX_OPEN_FILES = 32  # partitions written at once per chunk; the least recent is closed beyond
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


class FileFormat(Protocol):
    """What :class:`ChunkWriter` needs of a file destination: its store, staging folder and format writer.

    ``fs`` is an fsspec filesystem; raw files, streams and writers are fsspec and pyarrow
    objects (untyped there), hence ``Any``.
    """

    fs: Any

    def staging(self, load: Load) -> str: ...

    def suffix(self, load: Load) -> str: ...

    def wrap(self, raw: Any, load: Load) -> Any: ...

    def open_writer(self, handle: Any, schema: pa.Schema, load: Load) -> Any: ...

    def write_batch(self, writer: Any, handle: Any, batch: pa.RecordBatch) -> None: ...

    def close_writer(self, writer: Any) -> None: ...


@dataclass
class _Open:
    """One file being written."""

    rel: str
    raw: Any
    stream: Any
    writer: Any


@dataclass
class ChunkWriter:
    """Writes one chunk's batches into files of about ``limit`` bytes, per partition."""

    dest: FileFormat
    load: Load
    chunk: int
    limit: int
    open: OrderedDict[str, _Open] = field(default_factory=OrderedDict)
    counters: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    rows: int = 0

    def write(self, batch: pa.RecordBatch) -> None:
        self.rows += batch.num_rows
        cols = self.load.options.partition_by
        if not cols:
            self._write("", batch)
            return
        for folder, part in split_partitions(batch, cols):
            self._write(folder, part)

    def _write(self, folder: str, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        f = self.open.get(folder)
        if f is None:
            f = self._start(folder, batch.schema)
        self.open.move_to_end(folder)
        self.dest.write_batch(f.writer, f.stream, batch)
        if f.raw.tell() >= self.limit:
            self._finish(folder)
        if len(self.open) > MAX_OPEN_FILES:
            self._finish(next(iter(self.open)))

    def _start(self, folder: str, schema: pa.Schema) -> _Open:
        n = self.counters.get(folder, 0)
        self.counters[folder] = n + 1
        rel = f"{folder}part-{self.load.load_id}-{self.chunk:05d}-{n:03d}.{self.dest.suffix(self.load)}"
        path = f"{self.dest.staging(self.load)}/{rel}"
        if not is_url(path):
            self.dest.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        raw = self.dest.fs.open(path, "wb")
        stream = self.dest.wrap(raw, self.load)
        f = _Open(rel, raw, stream, self.dest.open_writer(stream, schema, self.load))
        self.open[folder] = f
        self.files.append(rel)
        return f

    def _finish(self, folder: str) -> None:
        f = self.open.pop(folder)
        self.dest.close_writer(f.writer)
        if f.stream is not f.raw:
            f.stream.close()
        f.raw.close()

    def close(self) -> None:
        while self.open:
            self._finish(next(iter(self.open)))

    def discard(self) -> None:
        """Abandon the open files (a failed chunk); what was uploaded is left to abort."""
        for f in self.open.values():
            for closer in (getattr(f.raw, "discard", None), f.raw.close):
                try:
                    if closer:
                        closer()
                except Exception:  # noqa: BLE001, S112 - best effort on a failing chunk
                    continue
        self.open.clear()


def split_partitions(batch: pa.RecordBatch, cols: list[str]) -> list[tuple[str, pa.RecordBatch]]:
    """(``col=value/`` folder, rows without the partition columns) per distinct key in ``batch``."""
    import polars as pl
    import pyarrow as pa

    missing = [c for c in cols if c not in batch.schema.names]
    if missing:
        msg = f"partition_by column {missing[0]!r} is not in the data (columns: {', '.join(batch.schema.names)})"
        raise ConfigError(msg)
    keys = pl.from_arrow(pa.Table.from_batches([batch.select(cols)]))
    assert isinstance(keys, pl.DataFrame)
    keys = keys.with_row_index("_i").sort(cols, nulls_last=True, maintain_order=True)
    order = keys.get_column("_i").to_arrow()
    groups = keys.with_row_index("_pos").group_by(cols, maintain_order=True).agg(pl.col("_pos").first().alias("start"), pl.len().alias("n"))
    rest = batch.drop_columns(cols).take(order)
    out = []
    for row in groups.iter_rows(named=True):
        folder = "".join(f"{c}={_hive_value(row[c])}/" for c in cols)
        out.append((folder, rest.slice(row["start"], row["n"])))
    return out


def _hive_value(value: object) -> str:
    if value is None:
        return HIVE_NULL
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return urllib.parse.quote(text, safe=" -_.~+,@")
