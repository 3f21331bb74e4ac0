"""CSV header names, made the same on every run and every destination.

Polars unescapes a quoted field but not a quoted header name (``"a""b"`` stays
``a""b``), names an empty header ``""`` (each destination then invents its own name) and
keeps ``id`` and ``ID`` apart, which case-insensitive destinations rename on the first
run only. :func:`read` takes the header record as data (so quoting is undone like in any
field) and :func:`clean` applies the rules:

* an empty (or blank) name becomes ``column_<n>``, ``n`` its 1-based position;
* a name equal, ignoring case, to an earlier one gets ``_2`` (then ``_3``...), the first
  suffix not yet taken, in header order.

Examples
--------
>>> clean(['a"b', None, "id", "ID", "a", "A", " "])
['a"b', 'column_2', 'id', 'ID_2', 'a', 'A_2', 'column_7']
"""

from __future__ import annotations

from typing import TYPE_CHECKING, BinaryIO

import polars as pl

if TYPE_CHECKING:
    from conduit.connectors.files.options import CsvOptions


HEAD_BYTES = 8 << 20  # the header must lie within the first 8 MiB (after skip_rows and comments)


def clean(raw: list[str | None]) -> list[str]:
    """The header names by the rules above."""
    out: list[str] = []
    taken: set[str] = set()
    for i, name in enumerate(raw, start=1):
        name = name if name is not None and name.strip() else f"column_{i}"
        candidate, k = name, 2
        while candidate.lower() in taken:
            candidate, k = f"{name}_{k}", k + 1
        taken.add(candidate.lower())
        out.append(candidate)
    return out


def read(fh: BinaryIO, opts: CsvOptions, names: list[str]) -> list[str]:
    """The cleaned names of the header record at the start of ``fh``; ``names`` cleaned if it cannot be read so.

    Only the first :data:`HEAD_BYTES` are read (Polars reads a whole file even for one
    row), cut at the last record boundary.
    """
    from conduit.connectors.files.blocks import boundary

    data = fh.read(HEAD_BYTES)
    if len(data) == HEAD_BYTES:
        cut = boundary(data, opts.quote)
        if cut < 0:
            return clean(list(names))
        data = data[: cut + 1]
    try:
        row = pl.read_csv(
            data,
            separator=opts.delimiter,
            quote_char=opts.quote,
            has_header=False,
            infer_schema=False,
            comment_prefix=opts.comment,
            skip_rows=opts.skip_rows,
            raise_if_empty=False,
            n_rows=1,
            truncate_ragged_lines=True,  # a ragged record further down is the readers' business, not the header's
            encoding="utf8-lossy",  # so are invalid bytes
        )
    except pl.exceptions.PolarsError:
        return clean(list(names))
    return clean(list(row.row(0)) if row.height else list(names))
