"""The dead-letter store: bad rows as Parquet under ``.conduit/dlq/<run_id>/``.

Rows are written per chunk (``_parts/<resource>-<chunk>.parquet``, overwritten if a
resumed run redoes the chunk, so nothing is dead-lettered twice) and gathered into
``<resource>.parquet`` when the resource finishes. Every original column is kept as
text, plus the ``_conduit_*`` columns of SPEC section 3.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

META = ["_conduit_run_id", "_conduit_resource", "_conduit_source_file", "_conduit_row_number", "_conduit_check", "_conduit_error", "_conduit_loaded_at"]


def as_text(df: pl.DataFrame) -> pl.DataFrame:
    """Every column as text (nested values as JSON) so any bad value can be kept."""
    exprs = []
    for name, dtype in df.schema.items():
        col = pl.col(name)
        if isinstance(dtype, pl.Struct):
            exprs.append(col.struct.json_encode())
        elif isinstance(dtype, pl.List | pl.Array):
            exprs.append(pl.struct(col).struct.json_encode().str.slice(len(name) + 4).str.head(-1).alias(name))
        elif dtype != pl.String:
            exprs.append(col.cast(pl.String))
        else:
            exprs.append(col)
    return df.select(exprs)


class DeadLetters:
    """Dead letters of one resource in one run."""

    def __init__(self, dlq_dir: Path, run_id: str, resource: str):
        self.dir = dlq_dir / run_id
        self.run_id = run_id
        self.resource = resource
        self.loaded_at = dt.datetime.now(dt.UTC)
        self._pending: list[pl.DataFrame] = []

    @property
    def path(self) -> Path:
        """The gathered file (exists once the resource wrote any bad row)."""
        return self.dir / f"{self.resource}.parquet"

    def add(self, rows: pl.DataFrame, source_file: str, row_numbers: pl.Series, check: pl.Series | str, error: pl.Series) -> None:
        """Queue bad ``rows`` (original columns) with their numbers, check names and reasons."""
        meta = pl.DataFrame(
            {
                "_conduit_run_id": pl.Series([self.run_id] * rows.height, dtype=pl.String),
                "_conduit_resource": pl.Series([self.resource] * rows.height, dtype=pl.String),
                "_conduit_source_file": pl.Series([source_file] * rows.height, dtype=pl.String),
                "_conduit_row_number": row_numbers.cast(pl.Int64),
                "_conduit_check": check if isinstance(check, pl.Series) else pl.Series([check] * rows.height, dtype=pl.String),
                "_conduit_error": error.cast(pl.String),
                "_conduit_loaded_at": pl.Series([self.loaded_at] * rows.height, dtype=pl.Datetime("us", "UTC")),
            }
        )
        self._pending.append(pl.concat([as_text(rows.drop([c for c in META if c in rows.columns])), meta], how="horizontal"))

    def flush_chunk(self, chunk: int) -> int:
        """Write queued rows as the chunk's part file; return how many."""
        if not self._pending:
            return 0
        df = pl.concat(self._pending, how="diagonal_relaxed")
        self._pending.clear()
        parts = self.dir / "_parts"
        parts.mkdir(parents=True, exist_ok=True)
        df.write_parquet(parts / f"{self.resource}-{chunk:05d}.parquet")
        return df.height

    def take(self) -> list[pl.DataFrame]:
        """Detach the queued rows (parallel staging keeps them with their chunk)."""
        pending, self._pending = self._pending, []
        return pending

    def restore(self, pending: list[pl.DataFrame]) -> None:
        """Queue rows detached by :meth:`take` again (before :meth:`flush_chunk`)."""
        self._pending = pending + self._pending

    def discard(self) -> None:
        """Drop queued rows (the chunk was not staged)."""
        self._pending.clear()

    def gather(self) -> Path | None:
        """Combine the part files into ``<resource>.parquet``; None if there were no bad rows."""
        parts = sorted((self.dir / "_parts").glob(f"{self.resource}-*.parquet"))
        if not parts:
            return None
        pl.concat([pl.scan_parquet(p) for p in parts], how="diagonal_relaxed").sink_parquet(self.path)
        for p in parts:
            p.unlink()
        return self.path
