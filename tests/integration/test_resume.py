"""Exactly once, proven by killing the process: SIGKILL at several moments, then --resume.

The kill is real (``CONDUIT_FAULT`` makes the process SIGKILL itself at a named point,
see conduit/crash_points.py); results are checked with DuckDB directly against a clean load.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest

ROWS_PER_FILE = 60_000
FILES = 3

CONFIG = """\
sources: [{{name: files, type: csv, path: data/}}]
destinations: [{{name: local, type: duckdb, path: {db}}}]
resources:
  - {{name: events, source: files, destination: local, path: "events-*.csv", write_mode: {mode}, primary_keys: [id], batch_size: 2500}}
"""


def make_data(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for f in range(FILES):
        start = f * ROWS_PER_FILE
        df = pl.DataFrame({"id": pl.int_range(start, start + ROWS_PER_FILE, eager=True)}).with_columns((pl.col("id") * 7 % 1000).alias("amount"), pl.format("name-{}", pl.col("id")).alias("name"))
        if f == 1:  # a few bad rows: dead letters must be exactly once too
            df = df.with_columns(pl.when(pl.col("id") % 10_000 == 5).then(pl.lit("bad")).otherwise(pl.col("amount").cast(pl.String)).alias("amount"))
        df.write_csv(folder / f"events-{f}.csv")


def conduit(cfg: Path, *args: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONDUIT_FAULT": fault or ""}
    return subprocess.run([sys.executable, "-m", "conduit", "run", str(cfg), "--no-progress", *args], capture_output=True, text=True, env=env, timeout=300)


def fingerprint(db: Path) -> tuple[int, int, int]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute("SELECT count(*), count(DISTINCT id), sum(hash(id, amount, name)) FROM main.events").fetchone()  # type: ignore[return-value]


def store_rows(project: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(project / ".conduit" / "conduit.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, int, int]:
    """The fingerprint of an uninterrupted load."""
    d = tmp_path_factory.mktemp("clean")
    make_data(d / "data")
    (d / "ingest.yml").write_text(CONFIG.format(db="w.duckdb", mode="append"))
    assert conduit(d / "ingest.yml").returncode == 0
    return fingerprint(d / "w.duckdb")


@pytest.mark.parametrize(
    ("fault", "mode"),
    [
        pytest.param("read:3", "append", id="during-read"),
        pytest.param("staged:2", "append", id="after-chunk-staged"),
        pytest.param("staged:5", "merge", id="late-chunk-merge"),
        pytest.param("publish", "append", id="before-publish"),
        pytest.param("publish_commit", "append", id="inside-publish-transaction"),
        pytest.param("published", "append", id="after-publish-before-store"),
    ],
)
def test_kill_then_resume_loads_every_row_once(tmp_path: Path, clean: tuple[int, int, int], fault: str, mode: str) -> None:
    make_data(tmp_path / "data")
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(CONFIG.format(db="w.duckdb", mode=mode))
    crashed = conduit(cfg, fault=fault)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    db = tmp_path / "w.duckdb"
    if fault != "published":  # the target is untouched until the publish commits
        with duckdb.connect(str(db), read_only=True) as con:
            assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'events'").fetchone() == (0,)
    assert store_rows(tmp_path, "SELECT status FROM runs") == [("running",)]
    resumed = conduit(cfg, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming interrupted run" in resumed.stderr
    assert fingerprint(db) == clean
    rows = store_rows(tmp_path, "SELECT status, rows_read, rows_written, rows_dlq FROM resource_runs")
    assert rows == [("partial_success", FILES * ROWS_PER_FILE, clean[0], FILES * ROWS_PER_FILE - clean[0])]
    assert store_rows(tmp_path, f"SELECT count(*) FROM read_parquet('{tmp_path}/.conduit/dlq/*/events.parquet')") == [(FILES * ROWS_PER_FILE - clean[0],)]
    again = conduit(cfg)  # a later plain run starts a new run; with append it adds a second copy, no resume
    assert "resuming" not in again.stderr


def test_plain_run_after_crash_resumes_and_says_so(tmp_path: Path, clean: tuple[int, int, int]) -> None:
    make_data(tmp_path / "data")
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(CONFIG.format(db="w.duckdb", mode="append"))
    assert conduit(cfg, fault="staged:3").returncode == -signal.SIGKILL
    plain = conduit(cfg)
    assert plain.returncode == 0, plain.stderr
    assert "resuming interrupted run" in plain.stderr
    assert fingerprint(tmp_path / "w.duckdb") == clean


def test_changed_config_after_crash_starts_over_cleanly(tmp_path: Path, clean: tuple[int, int, int]) -> None:
    make_data(tmp_path / "data")
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(CONFIG.format(db="w.duckdb", mode="append"))
    assert conduit(cfg, fault="staged:3").returncode == -signal.SIGKILL
    cfg.write_text(CONFIG.format(db="w.duckdb", mode="append") + "# edited\n")
    fresh = conduit(cfg)
    assert fresh.returncode == 0, fresh.stderr
    assert "starting over" in fresh.stderr
    assert fingerprint(tmp_path / "w.duckdb") == clean
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE '_conduit_stage_%'").fetchone() == (0,)


def test_kill_at_a_random_moment(tmp_path: Path, clean: tuple[int, int, int]) -> None:
    """Not a named point: SIGKILL from outside after a delay, then resume.

    On a busy machine the load can finish between two looks at the store; such a kill
    (the run already recorded as finished) proves nothing, so it is tried again, sooner.
    """
    make_data(tmp_path / "data")
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(CONFIG.format(db="w.duckdb", mode="append").replace("batch_size: 2500", "batch_size: 1000"))
    store = tmp_path / ".conduit" / "conduit.duckdb"
    for checkpoints in (2, 1, 0):
        for path in (tmp_path / "w.duckdb", tmp_path / ".conduit"):
            if path.is_dir():
                shutil.rmtree(path)
            path.unlink(missing_ok=True)
        proc = subprocess.Popen([sys.executable, "-m", "conduit", "run", str(cfg), "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:  # wait until staging is under way
            time.sleep(0.02)
            try:
                if store_rows(tmp_path, "SELECT count(*) FROM checkpoints")[0][0] >= checkpoints:
                    break
            except (duckdb.Error, IndexError):
                continue
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        if proc.returncode == -signal.SIGKILL and store.exists() and store_rows(tmp_path, "SELECT count(*) FROM runs WHERE status = 'running'")[0][0]:
            break  # killed mid-run
    else:
        pytest.fail("the load finished before every kill; make it bigger")
    resumed = conduit(cfg, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert fingerprint(tmp_path / "w.duckdb") == clean


def test_resume_speaks_only_of_resources_the_crash_interrupted(tmp_path: Path) -> None:
    """A resource that had not started before the crash is simply loaded: no resume message about it."""
    make_data(tmp_path / "data")
    cfg = tmp_path / "ingest.yml"
    two = CONFIG.format(db="w.duckdb", mode="append")
    two += two.splitlines()[-1].replace("name: events,", "name: later,") + "\n"
    cfg.write_text(two)
    assert conduit(cfg, "--workers", "1", fault="staged:2").returncode == -signal.SIGKILL  # resources one after another: "later" has not started
    resumed = conduit(cfg, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "events: resuming after" in resumed.stderr
    assert "later:" in resumed.stderr and "later: nothing was durably staged" not in resumed.stderr
    assert store_rows(tmp_path, "SELECT resource, status FROM resource_runs ORDER BY resource") == [("events", "partial_success"), ("later", "partial_success")]
