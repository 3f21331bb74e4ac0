"""Large Parquet files cut into row-group ranges: parts that load on several workers.

With more than one part at a time (``--workers``, ``parallelism``), a Parquet file of
at least ``2 * RANGE_ROWS`` rows in several row groups is read as
parts of consecutive row groups (:meth:`RowGroups.ranges
<conduit.connectors.files.row_groups.RowGroups.ranges>`), each a part job of its own,
named ``<file>#row_groups=<first>-<last>``. The cut depends only on the file's footer,
so a resumed run finds the same names in its ledger; per-file bookkeeping (files seen
by an incremental load) still uses the file (:attr:`Part.file
<conduit.connectors.base.Part.file>`). A range's row numbers (dead letters, positions)
count from its first row.

The driver (:mod:`conduit.chunk_stream`) cuts a file only when the destination would
not read it whole itself (DuckDB's ``read_parquet``, already parallel), and a resume
keeps the cut of the crashed run whatever its ``--workers`` (its ledger names the file
or its ranges); a Ray worker
finds its parts by name and rebuilds a range from its name (:func:`find`).
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import TYPE_CHECKING

from conduit.connectors.base import Part

if TYPE_CHECKING:
    from conduit.connectors.files.row_groups import RowGroups

MARK = "#row_groups="
RANGE_ROWS = int(os.environ.get("CONDUIT_RANGE_ROWS") or 2_000_000)
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
    return [_range(part, r) for r in ranges]


def find(listed: Part, names: set[str]) -> list[Part]:
    """The parts of ``names`` that are ``listed`` or one of its ranges (rebuilt from the name: no re-cut, whatever ``RANGE_ROWS`` is here)."""
    from conduit.connectors.files.row_groups import RowGroups

    found = [listed] if listed.name in names else []
    prefix = f"{listed.name}{MARK}"
    for name in sorted(n for n in names if n.startswith(prefix)):
        first, _, last = name[len(prefix) :].partition("-")
        if isinstance(listed.frame, RowGroups) and first.isdigit() and last.isdigit() and int(first) <= int(last) < len(listed.frame.rows):
            found.append(_range(listed, listed.frame.slice(int(first), int(last) + 1)))
    return found


def _range(part: Part, frame: RowGroups) -> Part:
    total = max(1, sum(getattr(part.frame, "rows", [])))
    last = frame.first_group + len(frame.rows) - 1
    return replace(part, name=f"{part.name}{MARK}{frame.first_group}-{last}", frame=frame, bytes=max(1, part.bytes * sum(frame.rows) // total), local=None, file=part.name)
