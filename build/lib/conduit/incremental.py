"""Incremental high-water marks: typed, filtered in the frame or pushed into SQL.

A mark is stored as text with its Arrow type name and parsed back to a typed Python
value, so a timestamp stays a timestamp and ``10 > 9`` is never compared as text.
The mark advances only after the publish commits (:meth:`State.commit`).

A mark belongs to the destination table it was loaded into (:data:`Target`), not to the
resource name alone: pointing a resource at another schema or database loads it there
from the start. In ``merge`` mode rows *at* the mark are read again (``>=``) and the
merge on the primary key keeps them once, so a row written later with exactly the
mark's value still loads; other modes read rows above it (``>``), and
``incremental_lookback`` (which re-reads rows) needs ``merge`` (checked at validate).

Examples
--------
>>> parse_value("2024-05-01 10:00:00+00:00", "timestamp[us, tz=UTC]")
datetime.datetime(2024, 5, 1, 10, 0, tzinfo=datetime.timezone.utc)
>>> parse_value("42", "int64")
42
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

from conduit.connectors.base import Incremental

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

    from conduit.config import ResourceConfig
    from conduit.store import Store

Value: TypeAlias = Any
"""A typed mark: int, float, Decimal, date, datetime or str, as pyarrow's ``Scalar.as_py()``
returns it (typed ``Any`` there); marks are compared with ``>`` and shifted by the lookback."""


Target = tuple[str, str, str]
"""Where a resource loads: (destination as described, without secrets; schema; table)."""


def parse_value(text: str | None, type_name: str | None) -> Value:
    """The typed value of a stored mark."""
    if text is None or type_name is None:
        return None
    t = type_name.lower()
    if t.startswith(("int", "uint")):
        return int(text)
    if t.startswith(("double", "float", "halffloat")):
        return float(text)
    if t.startswith("decimal"):
        return decimal.Decimal(text)
    if t.startswith("date"):
        return dt.date.fromisoformat(text)
    if t.startswith("timestamp"):
        return dt.datetime.fromisoformat(text)
    return text


def parse_lookback(value: str | int | float | None, sample: Value) -> Value:
    """The lookback window as something subtractable from the mark's type.

    >>> parse_lookback("2h", dt.datetime(2024, 1, 1))
    datetime.timedelta(seconds=7200)
    >>> parse_lookback(100, 5)
    100
    """
    if value is None:
        return None
    if isinstance(value, int | float):
        return dt.timedelta(days=value) if isinstance(sample, dt.date) else value
    text = str(value).strip().lower()
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    if text[-1:] in units and text[:-1].replace(".", "", 1).isdigit():
        return dt.timedelta(**{units[text[-1]]: float(text[:-1])})
    return decimal.Decimal(text) if isinstance(sample, decimal.Decimal) else float(text)


@dataclass
class State:
    """The incremental state of one resource during one run."""

    resource: str
    column: str | None
    target: Target = ("", "", "")
    inclusive: bool = False
    before: Value = None
    before_type: str | None = None
    reset: bool = False
    after: Value = None
    after_type: str | None = None
    lookback: Value = None
    seen_files: set[str] = field(default_factory=set)
    new_files: set[str] = field(default_factory=set)
    null_rows: int = 0
    legacy: bool = False  # the mark came from a store row without a target (an earlier version); commit moves it

    @classmethod
    def load(cls, store: Store, res: ResourceConfig, full_refresh: bool, target: Target = ("", "", ""), merge: bool = False) -> State:
        """Read the mark stored for ``target`` (ignored with ``full_refresh``); ``merge``: rows at the mark are read again."""
        if not res.incremental_column:
            return cls(res.name, None, target)
        column, text, type_name, legacy = store.get_state(res.name, target)
        if full_refresh or column != res.incremental_column:
            return cls(res.name, res.incremental_column, target, merge, reset=full_refresh)
        value = parse_value(text, type_name)
        lookback = parse_lookback(res.incremental_lookback, value)
        return cls(res.name, column, target, merge, value, type_name, after=value, after_type=type_name, lookback=lookback, seen_files=store.seen_files(res.name, target), legacy=legacy)

    @property
    def since(self) -> Value:
        """The value rows must exceed: the mark, less the lookback window."""
        if self.before is None or self.lookback is None:
            return self.before
        return self.before - self.lookback

    @property
    def before_text(self) -> str | None:
        """The mark before the run, as stored."""
        return None if self.before is None else str(self.before)

    @property
    def filter(self) -> Incremental | None:
        """The predicate handed to sources that push it down."""
        return Incremental(self.column, self.since, self.inclusive) if self.column else None

    def row_filter(self, part: str) -> Callable[[pl.DataFrame], pl.Series] | None:
        """A batch filter keeping rows above the mark (or at it, when inclusive).

        Rows whose incremental column is NULL are kept only from a part (file) not seen
        by an earlier successful run: loaded once, never on every run.
        """
        if self.column is None:
            return None
        self.new_files.add(part)
        if self.since is None:
            return None
        import polars as pl

        column, value, new_part, inclusive = self.column, self.since, part not in self.seen_files, self.inclusive

        def keep(df: pl.DataFrame) -> pl.Series:
            col = df.get_column(column)
            if isinstance(col.dtype, pl.Datetime) and col.dtype.time_zone:
                col = col.dt.convert_time_zone("UTC")
            mark = str(value) if col.dtype == pl.String else value
            above = col >= mark if inclusive else col > mark
            return above.fill_null(new_part)

        return keep

    def mark(self) -> list[str | None] | None:
        """The mark so far as ``[text, type]`` (kept in the chunk ledger for resume)."""
        return None if self.after is None or self.after == self.before else [_text(self.after), self.after_type]

    def restore(self, mark: list[str | None] | None) -> None:
        """Fold in a mark recorded by a chunk staged before a crash."""
        if mark:
            value = parse_value(mark[0], mark[1])
            if self.after is None or value > self.after:
                self.after, self.after_type = value, mark[1]

    def observe(self, batch: pa.RecordBatch | None) -> None:
        """Track the largest incremental value among loaded rows."""
        if self.column is None or batch is None or batch.num_rows == 0 or self.column not in batch.schema.names:
            return
        import pyarrow.compute as pc

        from conduit.schema import without_views

        arr = batch.column(self.column)
        if without_views(arr.type) != arr.type:  # Arrow's min/max have no view kernels
            arr = arr.cast(without_views(arr.type))
        self.null_rows += arr.null_count
        top = pc.max(arr).as_py()
        if top is not None and (self.after is None or top > self.after):
            self.after, self.after_type = top, str(arr.type)

    def commit(self, store: Store, run_id: str) -> str | None:
        """Persist the new mark (called after the publish committed); return it as text."""
        if self.column is None:
            return None
        if self.new_files:
            store.add_seen_files(self.resource, sorted(self.new_files - self.seen_files), run_id, self.target)
        if self.after is None:
            if self.reset:
                store.reset_state(self.resource, self.target)
            return None
        text = _text(self.after)
        if self.reset or self.after != self.before or self.legacy:
            store.set_state(self.resource, self.column, text, self.after_type or "string", run_id, self.target)
        return text


def _text(value: Value) -> str:
    return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else str(value)
