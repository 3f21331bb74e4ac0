"""The dead-letter store: bad rows as Parquet under ``.conduit/dlq/<run_id>/``.

Rows are written per chunk (``_parts/<resource>-<chunk>.parquet``, overwritten if a
resumed run redoes the chunk, so nothing is dead-lettered twice) and gathered into
``<resource>.parquet`` when the resource finishes, or when a limit or a ``fail`` check
stops it (so what tripped it can be inspected). Every original column is kept as
text, plus ``_conduit_run_id``, ``_conduit_resource``, ``_conduit_source_file``,
``_conduit_row_number``, ``_conduit_check``, ``_conduit_error`` and ``_conduit_loaded_at``. Beside the part files, each
chunk's new ``unique`` keys are saved (``<resource>-<chunk>.keys<j>.npy``) so that
``--resume`` rebuilds the seen-key sets of the chunks already staged.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    from collections.abc import Collection

    import numpy as np

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

    @property
    def pending_rows(self) -> int:
        """Dead letters queued for the current chunk."""
        return sum(df.height for df in self._pending)

    def flush_chunk(self, chunk: int) -> int:
        """Write queued rows as the chunk's part file; return how many."""
        if not self._pending:
            return 0
        df = pl.concat(self._pending, how="diagonal_relaxed")
        self._pending.clear()
        self._part(chunk).parent.mkdir(parents=True, exist_ok=True)
        df.write_parquet(self._part(chunk))
        return df.height

    def take(self) -> list[pl.DataFrame]:
        """Detach the queued rows (parallel staging keeps them with their chunk)."""
        pending, self._pending = self._pending, []
        return pending

    def restore(self, pending: list[pl.DataFrame]) -> None:
        """Queue rows detached by :meth:`take` again (before :meth:`flush_chunk`)."""
        self._pending = pending + self._pending

    def _part(self, chunk: int) -> Path:
        return self.dir / "_parts" / f"{self.resource}-{chunk:05d}.parquet"

    def discard(self, chunk: int) -> None:
        """Drop the chunk's rows and saved keys (the chunk was not staged)."""
        self._pending.clear()
        self._part(chunk).unlink(missing_ok=True)
        for p in self._keys(chunk):
            p.unlink()

    def save_keys(self, chunk: int, keys: dict[int, np.ndarray]) -> None:
        """Save the chunk's new ``unique`` keys (one ``.npy`` per check) before the chunk commits."""
        import numpy as np

        for j, array in keys.items():
            path = self.dir / "_parts" / f"{self.resource}-{chunk:05d}.keys{j}.npy"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, array)

    def load_keys(self, staged_chunks: Collection[int]) -> dict[int, list[np.ndarray]]:
        """On resume: the saved keys of the staged chunks (their numbers), per check (other chunks' files removed)."""
        import numpy as np

        out: dict[int, list[np.ndarray]] = {}
        for path in sorted((self.dir / "_parts").glob(f"{self.resource}-[0-9]*.keys*.npy")):
            chunk, _, j = path.name.removesuffix(".npy").rsplit("-", 1)[1].partition(".keys")
            if int(chunk) in staged_chunks:
                out.setdefault(int(j), []).append(np.load(path))
            else:
                path.unlink()
        return out

    def _keys(self, chunk: int) -> list[Path]:
        return list((self.dir / "_parts").glob(f"{self.resource}-{chunk:05d}.keys*.npy"))

    def resume(self, staged_chunks: Collection[int] | None) -> int:
        """On resume: keep part files of staged chunks (their numbers; None: all), return their row count, drop the rest."""
        import pyarrow.parquet as pq

        kept = 0
        for path in sorted((self.dir / "_parts").glob(f"{self.resource}-[0-9]*.parquet")):
            if staged_chunks is None or int(path.stem.rsplit("-", 1)[1]) in staged_chunks:
                kept += pq.ParquetFile(path).metadata.num_rows
            else:
                path.unlink()
        return kept

    def gather(self) -> Path | None:
        """Combine the part files into ``<resource>.parquet`` (idempotent); None if there were no bad rows."""
        parts = sorted((self.dir / "_parts").glob(f"{self.resource}-[0-9]*.parquet"))
        if not parts:
            return None
        pl.concat([pl.scan_parquet(p) for p in parts], how="diagonal_relaxed").sink_parquet(self.path)
        return self.path

    def cleanup(self) -> None:
        """Remove the part files once the resource is published (a resume still needs them before)."""
        for p in (self.dir / "_parts").glob(f"{self.resource}-[0-9]*"):
            p.unlink()
