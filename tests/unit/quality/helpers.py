"""Run a one-resource project and read its results back through independent paths."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl

import conduit


def run_one(tmp: Path, files: dict[str, str | bytes], resource: str, source: str = "{name: f, type: csv, path: .}", batch_size: int | None = None):
    """Write files + ingest.yml, run, return (result, loaded rows, dlq frame or None, resource_runs row)."""
    for name, content in files.items():
        (tmp / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    (tmp / "ingest.yml").write_text(f"sources: [{source}]\ndestinations: [{{name: local, type: duckdb, path: w.duckdb}}]\nresources:\n  - {resource}\n")
    result = conduit.run(tmp / "ingest.yml", batch_size=batch_size)
    r = result.resources[0]
    loaded = None
    if r.status != "failed":
        with duckdb.connect(str(tmp / "w.duckdb"), read_only=True) as con:
            loaded = con.sql(f"SELECT * FROM {r.table}").pl()
    dlq_files = sorted((tmp / ".conduit" / "dlq").glob("*/*.parquet"))
    dlq = pl.concat([pl.read_parquet(f) for f in dlq_files], how="diagonal_relaxed") if dlq_files else None
    with duckdb.connect(str(tmp / ".conduit" / "conduit.duckdb"), read_only=True) as con:
        manifest = con.execute("SELECT status, rows_read, rows_written, rows_dlq, rows_warned FROM resource_runs").fetchone()
    return result, loaded, dlq, manifest


def assert_invariant(manifest, loaded, dlq) -> None:
    """rows read = rows loaded + rows dead-lettered, in the manifest and in the data."""
    _status, rows_read, rows_written, rows_dlq, _ = manifest
    n_dlq = 0 if dlq is None else dlq.height
    assert rows_written == (0 if loaded is None else loaded.height)
    assert rows_dlq == n_dlq
    assert rows_read == rows_written + rows_dlq
