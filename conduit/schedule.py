"""Which resources of a run start first when they do not all fit in the workers at once.

Resources run up to ``--workers`` at a time; when there are more, the largest (by the
bytes of the files they would read, from a listing only: :meth:`Source.plan_parts
<conduit.connectors.base.Source.plan_parts>`) start first, so the longest load does not
begin after the short ones finished (TPC-H: ``lineitem`` after ``customer`` and
``orders``). Resources whose size is unknown (queries) keep config order after those
known. Results are reported in config order whatever the start order.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from conduit.config import ResourceConfig
    from conduit.connectors.base import Source


def largest_first(resources: list[ResourceConfig], workers: int, source_of: Callable[[str], Source], project_dir: Path) -> list[ResourceConfig]:
    """``resources`` in start order: unchanged when they all start at once, else largest first (stable).

    Examples
    --------
    >>> largest_first(["a", "b"], 2, None, None)  # type: ignore[arg-type]
    ['a', 'b']
    """
    if workers <= 1 or len(resources) <= workers:
        return resources
    sizes = {res.name: _bytes(res, source_of, project_dir) for res in resources}
    return sorted(resources, key=lambda res: -sizes[res.name])


def _bytes(res: ResourceConfig, source_of: Callable[[str], Source], project_dir: Path) -> int:
    """The bytes ``res`` would read, from a listing; -1 when unknown (its errors surface when it loads)."""
    from conduit.connectors.base import Task

    with contextlib.suppress(Exception):
        planned = source_of(res.source).plan_parts(Task(res, project_dir))
        if planned is not None and all(p.bytes is not None for p in planned):
            return sum(p.bytes or 0 for p in planned)
    return -1
