"""Arrow batches -> rolling Parquet files, each handed to an uploader while the next is written.

The warehouse destinations (Snowflake, BigQuery) bulk-load from Parquet files: this
module writes a chunk's batches into files of about ``target_bytes`` of Arrow data
(zstd-compressed, so a few times smaller on disk) and calls ``upload(path)`` for each
finished file on one background thread, so uploading file *k* overlaps writing file
*k+1*. A failed upload stops the writing and is re-raised in the caller's thread.

Examples
--------
>>> import pyarrow as pa, tempfile, pathlib
>>> reader = pa.RecordBatchReader.from_batches(pa.schema([("a", pa.int64())]), [pa.record_batch({"a": [1, 2]})] * 3)
>>> sent = []
>>> write_files(reader, pathlib.Path(tempfile.mkdtemp()), sent.append, target_bytes=1).rows
6
>>> len(sent)
3
"""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

MIB = 1024 * 1024


@dataclass
class Written:
    """What :func:`write_files` produced: rows, files, bytes on disk."""

    rows: int = 0
    files: list[Path] = field(default_factory=list)
    bytes: int = 0


def write_files(
    reader: pa.RecordBatchReader,
    directory: Path,
    upload: Callable[[Path], object],
    target_bytes: int = 128 * MIB,
    names: list[str] | None = None,
    compression: str = "zstd",
    prepare: Callable[[pa.RecordBatch], pa.RecordBatch] | None = None,
) -> Written:
    """Write ``reader`` as Parquet files under ``directory``, uploading each as it closes.

    Parameters
    ----------
    reader
        The chunk's batches (consumed here).
    directory
        Where the files go (``part-00000.parquet``...); the caller removes it.
    upload
        Called with each finished file's path on a background thread.
    target_bytes
        Start a new file after this much Arrow data (uncompressed).
    names
        Column names to write instead of the reader's (same order).
    compression
        Parquet codec.
    prepare
        Applied to each batch before writing (casts); vectorized Arrow only.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Written()
    writer: pq.ParquetWriter | None = None
    current: Path | None = None
    size = 0
    pending: list[cf.Future[object]] = []
    with cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="conduit-upload") as pool:

        def close() -> None:
            nonlocal writer, current, size
            if writer is not None and current is not None:
                writer.close()
                out.files.append(current)
                out.bytes += current.stat().st_size
                pending.append(pool.submit(upload, current))
            writer, current, size = None, None, 0

        try:
            for batch in reader:
                if batch.num_rows == 0:
                    continue
                for done in [f for f in pending if f.done()]:
                    done.result()  # an upload failed: stop writing now
                if prepare is not None:
                    batch = prepare(batch)
                if names is not None:
                    batch = pa.RecordBatch.from_arrays(batch.columns, names=names)
                if writer is None:
                    current = directory / f"part-{len(out.files):05d}.parquet"
                    writer = pq.ParquetWriter(current, batch.schema, compression=compression)
                writer.write_batch(batch)
                out.rows += batch.num_rows
                size += batch.nbytes
                if size >= target_bytes:
                    close()
            close()
        finally:
            if writer is not None:
                writer.close()
            for fut in pending:
                fut.result()
    return out
