"""A Parquet file read row group by row group with pyarrow, through fsspec.

Polars' streaming Parquet scan reads well ahead of its consumer; reading one row group
at a time, cut into batches, holds one row group in memory (its columns still decode
in parallel), and a resume starts at the row group holding the first row not yet
staged instead of decoding everything before.

Examples
--------
>>> import pyarrow as pa, pyarrow.parquet as pq, fsspec, tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "t.parquet")
>>> pq.write_table(pa.table({"a": list(range(10))}), path, row_group_size=4)
>>> groups = RowGroups(fsspec.filesystem("file"), path)
>>> start, batches = groups.batches(skip=5, batch_size=3)
>>> start, [b.num_rows for b in batches]
(4, [3, 1, 2])
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from conduit.connectors.base import Seekable
from conduit.connectors.files.storage import is_url
from conduit.schema import without_views


class RowGroups(Seekable):
    """One Parquet file (a local path or any fsspec URL) as a :class:`Seekable` stream."""

    def __init__(self, fs: Any, url: str):
        self.fs, self.url = fs, url
        with self._open() as fh:
            file = pq.ParquetFile(fh)
            stored = file.schema_arrow
            self.schema = pa.schema([f.with_type(pa.float32()) if pa.types.is_float16(f.type) else f for f in stored], metadata=stored.metadata)
            self._half = not self.schema.equals(stored)  # float16 columns: read as float32 (no destination, nor Polars, takes half floats)
            self.metadata = file.metadata
            self.rows = [file.metadata.row_group(i).num_rows for i in range(file.num_row_groups)]
        self.num_rows = sum(self.rows)
        self.first_group = 0  # a range (:meth:`ranges`) reads row groups first_group .. first_group + len(rows) - 1

    def ranges(self, rows: int) -> list[RowGroups]:
        """The file cut into runs of consecutive row groups of at least ``rows`` rows each (the last may hold fewer).

        Depends only on the file's footer, so a resume cuts it the same way. One range
        (the whole file) when it holds fewer than ``2 * rows`` rows or one row group.

        Examples
        --------
        >>> import pyarrow as pa, pyarrow.parquet as pq, fsspec, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "t.parquet")
        >>> pq.write_table(pa.table({"a": list(range(10))}), path, row_group_size=2)
        >>> [(r.first_group, r.num_rows) for r in RowGroups(fsspec.filesystem("file"), path).ranges(4)]
        [(0, 4), (2, 6)]
        """
        cuts, held = [0], 0
        for i, n in enumerate(self.rows):
            held += n
            if held >= rows and i + 1 < len(self.rows) and sum(self.rows[i + 1 :]) >= rows:
                cuts.append(i + 1)
                held = 0
        return [self.slice(a, b) for a, b in zip(cuts, [*cuts[1:], len(self.rows)], strict=True)]

    def slice(self, first: int, end: int) -> RowGroups:
        """Row groups ``first`` .. ``end - 1`` (of this stream) as a stream of their own."""
        part = copy.copy(self)
        part.first_group, part.rows = self.first_group + first, self.rows[first:end]
        part.num_rows = sum(part.rows)
        return part

    def _open(self) -> Any:
        """A local file through Arrow's own reader (no Python in the read path), else fsspec."""
        return pa.OSFile(self.url, "rb") if not is_url(self.url) else self.fs.open(self.url, "rb")

    def batches(self, skip: int, batch_size: int, want: pa.Schema | None = None) -> tuple[int, Iterator[pa.RecordBatch]]:
        """Batches from the row group holding row ``skip + 1`` on (strings as ``want`` lays them out, where cheaper)."""
        first, before = 0, 0
        while first < len(self.rows) and before + self.rows[first] <= skip:
            before += self.rows[first]
            first += 1
        return before, self._read(first, batch_size, self._plain_strings(want))

    def _read(self, first: int, batch_size: int, metadata: pq.FileMetaData | None = None) -> Iterator[pa.RecordBatch]:
        with self._open() as fh:
            file = pq.ParquetFile(fh) if metadata is None else pq.ParquetFile(fh, metadata=metadata, binary_type=pa.large_binary())
            for group in range(self.first_group + first, self.first_group + len(self.rows)):
                for batch in file.iter_batches(batch_size=batch_size, row_groups=[group]):
                    yield batch.cast(pa.schema([f.with_type(pa.float32()) if pa.types.is_float16(f.type) else f for f in batch.schema])) if self._half else batch

    def _plain_strings(self, want: pa.Schema | None) -> pq.FileMetaData | None:
        """The file's metadata without its stored Arrow schema, when that schema asks for string views that ``want`` does not.

        pyarrow then decodes strings straight into ``large_string`` (the stored schema
        would win over ``binary_type``), skipping the build of views and their cast. Used
        only when the file reads as the same schema but for the string layout; else None.
        """
        expected = pa.schema([f.with_type(without_views(f.type)) for f in self.schema])
        if want is None or expected.equals(self.schema) or any(f.type != without_views(f.type) for f in want):
            return None
        try:
            rebuild, (raw,) = self.metadata.__reduce__()
            serialized = raw.to_pybytes()
            if serialized.count(_HINT) != 1:
                return None
            metadata = rebuild(pa.py_buffer(serialized.replace(_HINT, b"ARROW:schemx")))  # same length: the Thrift framing holds
            with self._open() as fh:
                plain = pq.ParquetFile(fh, metadata=metadata, binary_type=pa.large_binary()).schema_arrow
        except (ValueError, TypeError, AttributeError, OSError, pa.ArrowException):  # pickling's layout is pyarrow's own: on any surprise, read as stored
            return None
        return metadata if plain.equals(expected) else None


_HINT = b"ARROW:schema"
