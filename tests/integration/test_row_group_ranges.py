"""A large Parquet file loads as row-group ranges (parts of their own): every row once, across a kill and resume.

``CONDUIT_RANGE_ROWS`` makes ranges small; the kill is real (``CONDUIT_FAULT``); counts
are read with DuckDB directly, part names from the store's checkpoints.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

GROUPS = 24
GROUP_ROWS = 2_000
RANGE_ROWS = 8_000  # 6 ranges of 4 row groups, each over 128 KiB (no small-file group)

CONFIG = """\
sources: [{{name: files, type: parquet, path: data/}}]
destinations: [{{name: local, type: duckdb, path: w.duckdb}}]
resources:
  - {{name: events, source: files, destination: local, path: "*.parquet", write_mode: {mode}, primary_keys: [id], batch_size: 500, columns: {{amount: bigint}}{extra}}}
"""


def make_parquet(folder: Path, name: str = "big.parquet", start: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    ids = pa.array(range(start, start + GROUPS * GROUP_ROWS), pa.int64())
    noise = random.Random(start)
    table = pa.table({"id": ids, "amount": pa.array([(i * 3) % 1000 for i in range(len(ids))], pa.int32()), "pad": pa.array([noise.randbytes(24).hex() for _ in range(len(ids))])})
    pq.write_table(table, folder / name, row_group_size=GROUP_ROWS)
    return folder / name


def conduit(cfg: Path, *args: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONDUIT_FAULT": fault or "", "CONDUIT_RANGE_ROWS": str(RANGE_ROWS)}
    return subprocess.run([sys.executable, "-m", "conduit", "run", str(cfg), "--no-progress", *args], capture_output=True, text=True, env=env, timeout=300)


def loaded(db: Path) -> tuple[int, int, int]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute("SELECT count(*), count(DISTINCT id), sum(id) FROM main.events").fetchall()[0]  # type: ignore[return-value]


def checkpoint_parts(project: Path) -> set[str]:
    with duckdb.connect(str(project / ".conduit" / "conduit.duckdb"), read_only=True) as con:
        return {r[0] for r in con.execute("SELECT part FROM checkpoints").fetchall()}


def expected(n: int = GROUPS * GROUP_ROWS, start: int = 0) -> tuple[int, int, int]:
    return n, n, sum(range(start, start + n))


def test_a_parquet_file_of_many_row_groups_loads_as_ranges_on_two_workers(tmp_path: Path) -> None:
    """Six ranges named by their row groups; every row once."""
    path = make_parquet(tmp_path / "data")
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(CONFIG.format(mode="append", extra=""))
    done = conduit(cfg, "--workers", "2")
    assert done.returncode == 0, done.stderr
    assert loaded(tmp_path / "w.duckdb") == expected()
    assert {p.rsplit("#", 1)[-1] for p in checkpoint_parts(tmp_path)} == {f"row_groups={a}-{a + 3}" for a in range(0, GROUPS, 4)}
    assert all(p.startswith(str(path)) for p in checkpoint_parts(tmp_path))


def test_one_part_at_a_time_reads_the_file_whole(tmp_path: Path) -> None:
    """With --workers 1 ranges would only add chunks: the file is one part."""
    path = make_parquet(tmp_path / "data")
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(CONFIG.format(mode="append", extra=""))
    done = conduit(cfg, "--workers", "1")
    assert done.returncode == 0, done.stderr
    assert loaded(tmp_path / "w.duckdb") == expected()
    assert checkpoint_parts(tmp_path) == {str(path)}


@pytest.mark.parametrize(
    ("fault", "mode"),
    [
        pytest.param("staged:3", "append", id="after-chunks-staged"),
        pytest.param("staged:5", "merge", id="late-chunk-merge"),
        pytest.param("publish", "append", id="before-publish"),
    ],
)
def test_ranges_killed_then_resumed_load_every_row_once(tmp_path: Path, fault: str, mode: str) -> None:
    """Ranges staged at once, a kill, a resume with another worker count: the same ranges, no row twice or lost."""
    make_parquet(tmp_path / "data")
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(CONFIG.format(mode=mode, extra=""))
    crashed = conduit(cfg, "--workers", "2", fault=fault)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    resumed = conduit(cfg, "--resume", "--workers", "1")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after" in resumed.stderr
    assert loaded(tmp_path / "w.duckdb") == expected()
    assert all("#row_groups=" in p for p in checkpoint_parts(tmp_path))  # the resume kept the crashed run's cut
    with duckdb.connect(str(tmp_path / ".conduit" / "conduit.duckdb"), read_only=True) as con:
        assert con.execute("SELECT rows_read, rows_written FROM resource_runs WHERE status = 'success'").fetchall() == [(GROUPS * GROUP_ROWS, GROUPS * GROUP_ROWS)]


def test_incremental_state_is_kept_per_file_not_per_range(tmp_path: Path) -> None:
    """files_seen names the file once; a second run with a new file loads only the new rows above the mark."""
    make_parquet(tmp_path / "data")
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(CONFIG.format(mode="append", extra=", incremental_column: id"))
    assert conduit(cfg, "--workers", "2").returncode == 0
    with duckdb.connect(str(tmp_path / ".conduit" / "conduit.duckdb"), read_only=True) as con:
        assert [r[0] for r in con.execute("SELECT file FROM files_seen").fetchall()] == [str(tmp_path / "data" / "big.parquet")]
    make_parquet(tmp_path / "data", "more.parquet", start=GROUPS * GROUP_ROWS)
    again = conduit(cfg, "--workers", "2")
    assert again.returncode == 0, again.stderr
    assert loaded(tmp_path / "w.duckdb") == expected(2 * GROUPS * GROUP_ROWS)
    with duckdb.connect(str(tmp_path / ".conduit" / "conduit.duckdb"), read_only=True) as con:
        assert sorted(r[0] for r in con.execute("SELECT file FROM files_seen").fetchall()) == [str(tmp_path / "data" / n) for n in ("big.parquet", "more.parquet")]
