"""Large Parquet files cut into row-group ranges: parts that load on several workers.

A Parquet file of at least ``2 * RANGE_ROWS`` rows in several row groups is read as
parts of consecutive row groups (:meth:`RowGroups.ranges
<conduit.connectors.files.row_groups.RowGroups.ranges>`), each a part job of its own,
named ``<file>#row_groups=<first>-<last>``. The cut depends only on the file's footer,
so a resumed run finds the same names in its ledger; per-file bookkeeping (files seen
by an incremental load) still uses the file (:attr:`Part.file
<conduit.connectors.base.Part.file>`). A range's row numbers (dead letters, positions)
count from its first row.

The driver (:mod:`conduit.chunk_stream`) cuts a file only when the destination would
not read it whole itself (DuckDB's ``read_parquet``, already parallel); a Ray worker,
which finds its parts by name, offers both the file and its ranges (:func:`candidates`).
"""

from __future__ import annotations

import os
from dataclasses import replace

from conduit.connectors.base import Part

RANGE_ROWS = int(os.environ.get("CONDUIT_RANGE_ROWS") or 1_000_000)
"""Rows of a row-group range, at least (``CONDUIT_RANGE_ROWS`` overrides it, for tests)."""


def split(part: Part) -> list[Part]:
    """``part``'s row-group ranges, or ``[part]`` when it is no Parquet file worth cutting."""
    from conduit.connectors.files.row_groups import RowGroups

    frame = part.frame
    if not isinstance(frame, RowGroups) or part.file is not None:
        return [part]
    ranges = frame.ranges(RANGE_ROWS)
    if len(ranges) < 2:
        return [part]
    total = max(1, sum(frame.rows))
    return [replace(part, name=f"{part.name}#row_groups={r.first_group}-{r.first_group + len(r.rows) - 1}", frame=r, bytes=max(1, part.bytes * sum(r.rows) // total), local=None, file=part.name) for r in ranges]


def candidates(part: Part) -> list[Part]:
    """The part and, when it cuts into ranges, each range: what a job may name."""
    pieces = split(part)
    return [part] if pieces == [part] else [part, *pieces]
