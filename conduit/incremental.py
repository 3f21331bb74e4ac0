"""Incremental high-water marks: typed, filtered in the frame or pushed into SQL.

A mark is stored as text with its Arrow type name and parsed back to a typed Python
value, so a timestamp stays a timestamp and ``10 > 9`` is never compared as text.
The mark advances only after the publish commits (:meth:`State.commit`).

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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conduit.connectors.base import Incremental

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

    from conduit.config import ResourceConfig


def parse_value(text: str | None, type_name: str | None) -> Any:
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


@dataclass
class State:
    """The incremental state of one resource during one run."""

    resource: str
    column: str | None
    before: Any = None
    before_type: str | None = None
    reset: bool = False
    after: Any = None
    after_type: str | None = None

    @classmethod
    def load(cls, store: Any, res: ResourceConfig, full_refresh: bool) -> State:
        """Read the stored mark (ignored with ``full_refresh``)."""
        if not res.incremental_column:
            return cls(res.name, None)
        column, text, type_name = store.get_state(res.name)
        if full_refresh or column != res.incremental_column:
            return cls(res.name, res.incremental_column, reset=full_refresh)
        value = parse_value(text, type_name)
        return cls(res.name, column, value, type_name, after=value, after_type=type_name)

    @property
    def before_text(self) -> str | None:
        """The mark before the run, as stored."""
        return None if self.before is None else str(self.before)

    @property
    def filter(self) -> Incremental | None:
        """The predicate handed to sources that push it down."""
        return Incremental(self.column, self.before) if self.column else None

    def row_filter(self) -> Any:
        """A batch filter keeping rows above the mark (rows with a NULL mark column are kept)."""
        if self.column is None or self.before is None:
            return None
        import polars as pl

        column, value = self.column, self.before

        def keep(df: pl.DataFrame) -> pl.Series:
            col = df.get_column(column)
            return (col > value).fill_null(True) if col.dtype != pl.String else (col > str(value)).fill_null(True)

        return keep

    def observe(self, batch: pa.RecordBatch | None) -> None:
        """Track the largest incremental value among loaded rows."""
        if self.column is None or batch is None or batch.num_rows == 0 or self.column not in batch.schema.names:
            return
        import pyarrow.compute as pc

        arr = batch.column(self.column)
        top = pc.max(arr).as_py()
        if top is not None and (self.after is None or top > self.after):
            self.after, self.after_type = top, str(arr.type)

    def commit(self, store: Any, run_id: str) -> str | None:
        """Persist the new mark (called after the publish committed); return it as text."""
        if self.column is None:
            return None
        if self.after is None:
            if self.reset:
                store.reset_state(self.resource)
            return None
        text = self.after.isoformat(sep=" ") if isinstance(self.after, dt.datetime) else str(self.after)
        if self.reset or self.after != self.before:
            store.set_state(self.resource, self.column, text, self.after_type or "string", run_id)
        return text
