"""The Ray engine on a real Ray cluster (a head node and a second node process on loopback).

A multi-file Parquet set is loaded into PostgreSQL and into DuckDB with part jobs on
Ray tasks; counts are checked directly (psycopg, duckdb), dead letters written by the
workers through the store's ``dlq`` view, and the destination's chunk ledger. One test
SIGKILLs the worker process of a running job after it committed chunks: Ray retries
the job and the load stays exact.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ray")  # the conduit-load[ray] extra; CI installs it (make dev: .[dev])

sys.path.insert(0, str(Path(__file__).parents[1]))
from ray_cluster import LocalRayCluster

import conduit
from conduit import _secrets
from conduit.cli import main
from conduit.store import Store

pytestmark = pytest.mark.slow

FILES, ROWS = 6, 40_000  # each file above 1 MiB, so each is a job of its own (smaller ones share a job)
BAD_EVERY = 100  # every 100th row has a negative amount: dead-lettered by a range check


@pytest.fixture(scope="module")
def worker_pg_uri(pg_uri: str) -> str:
    """The test server's URI with a password (trust auth ignores it) to look for where it must not be."""
    from conduit import _secrets

    if _secrets.uri_password(pg_uri):
        return pg_uri
    user, _, rest = pg_uri.partition("://")[2].partition("@")
    return f"postgresql://{user}:pw-ray-{uuid.uuid4().hex}@{rest}"


@pytest.fixture(scope="module")
def ray_cluster(worker_pg_uri: str) -> Iterator[LocalRayCluster]:
    root = Path(tempfile.mkdtemp(prefix="cr"))  # short: Ray's socket paths live under it
    cluster = LocalRayCluster(root, {"RAY_TEST_PG_URL": worker_pg_uri}).start()  # the nodes' own environment, as on KubeRay
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def write_parquet_set(folder: Path) -> int:
    """``FILES`` uncompressed Parquet files of ``ROWS`` rows (several row groups each); returns the rows that pass the check."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    i = np.arange(ROWS, dtype=np.int64)
    bad = (i + 1) % BAD_EVERY == 0
    amount = pa.array(np.where(bad, -1.0, i * 0.5))
    for f in range(FILES):
        ids = pa.array(i + f * ROWS)
        name = pc.binary_join_element_wise("name-of-row-padded-to-some-length-", pc.cast(ids, pa.string()), "")
        pq.write_table(pa.table({"id": ids, "amount": amount, "name": name}), folder / f"part-{f}.parquet", row_group_size=10_000, compression="none")
        assert (folder / f"part-{f}.parquet").stat().st_size > 1 << 20
    return FILES * int((~bad).sum())


def config(folder: Path, destination: str, address: str) -> Path:
    cfg = folder / "ingest.yml"
    cfg.write_text(
        f"""
engine: {{type: ray, address: "{address}"}}
sources: [{{name: lake, type: parquet, path: data}}]
destinations:
  - {destination}
resources:
  - name: events
    source: lake
    destination: out
    path: "*.parquet"
    batch_size: 2500  # 16 batches a file: two chunks of a job staged in parallel (8 batches each)
    quality_checks:
      - {{column: amount, check: range, min_value: 0, action: dlq}}
"""
    )
    return cfg


def pg_rows(uri: str, sql: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(uri) as conn:
        return conn.execute(sql).fetchall()


def dlq_count(cfg: Path, run_id: str) -> int:
    project = conduit.load_project(cfg)
    _, rows = Store(project.state_path).query(f"SELECT count(*), count(DISTINCT _conduit_source_file) FROM dlq WHERE _conduit_run_id = '{run_id}'")
    assert rows[0][1] == FILES, rows
    return int(rows[0][0])


@pytest.mark.postgres
def test_parquet_set_into_postgresql_on_ray(tmp_path: Path, pg_uri: str, pg_schema: str, worker_pg_uri: str, ray_cluster: LocalRayCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    good = write_parquet_set(tmp_path / "data")
    monkeypatch.setenv("RAY_TEST_PG_URL", worker_pg_uri)  # the driver's; workers expand ${RAY_TEST_PG_URL} from their node's
    cfg = config(tmp_path, f"{{name: out, type: postgresql, connection_string: '${{RAY_TEST_PG_URL}}', db_schema: {pg_schema}}}", ray_cluster.address)
    result = conduit.run(cfg)
    res = result.resources[0]
    assert (result.status, res.error) == ("partial_success", None), res.error
    assert (res.rows_read, res.rows_written, res.rows_dlq) == (FILES * ROWS, good, FILES * ROWS - good)
    assert pg_rows(pg_uri, f'SELECT count(*), count(DISTINCT id) FROM "{pg_schema}".events') == [(good, good)]
    assert pg_rows(pg_uri, f'SELECT count(*) FROM "{pg_schema}".events WHERE amount < 0') == [(0,)]
    assert pg_rows(pg_uri, f"SELECT rows FROM \"{pg_schema}\"._conduit_loads WHERE load_id = '{result.run_id}_events'") == [(good,)]
    assert dlq_count(cfg, result.run_id) == FILES * ROWS - good
    # again through the CLI's flags (no engine: in the file), appending into the table the first run created,
    # whose types match: a local run would COPY straight into it; Ray's workers must stage and commit on their own
    cfg.write_text("\n".join(line for line in cfg.read_text().splitlines() if not line.startswith("engine:")))
    with pytest.raises(SystemExit) as done:
        main(["run", str(cfg), "--engine", "ray", "--address", ray_cluster.address, "--no-progress"])
    assert done.value.code == 0
    assert pg_rows(pg_uri, f'SELECT count(*), count(DISTINCT id) FROM "{pg_schema}".events') == [(2 * good, good)]
    password = _secrets.uri_password(worker_pg_uri)
    assert password
    leaks = [str(f) for f in ray_cluster.root.rglob("*") if f.is_file() and password.encode() in f.read_bytes()]
    assert leaks == [], "the password is in Ray's files (logs, spilled objects)"


def test_parquet_set_into_duckdb_on_ray(tmp_path: Path, ray_cluster: LocalRayCluster) -> None:
    import duckdb

    good = write_parquet_set(tmp_path / "data")
    cfg = config(tmp_path, "{name: out, type: duckdb, path: out.duckdb}", ray_cluster.address)
    result = conduit.run(cfg)
    res = result.resources[0]
    assert (result.status, res.error) == ("partial_success", None), res.error
    assert (res.rows_read, res.rows_written, res.rows_dlq) == (FILES * ROWS, good, FILES * ROWS - good)
    with duckdb.connect(str(tmp_path / "out.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*), count(DISTINCT id), count(*) FILTER (amount < 0) FROM main.events").fetchall() == [(good, good, 0)]
        assert con.execute("SELECT count(*) FROM main._conduit_chunks").fetchall() == [(0,)]  # the publish consumed the ledger
    assert dlq_count(cfg, result.run_id) == FILES * ROWS - good


@pytest.mark.postgres
def test_a_worker_killed_mid_job_is_retried_and_the_load_stays_exact(tmp_path: Path, pg_uri: str, pg_schema: str, worker_pg_uri: str, ray_cluster: LocalRayCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    good = write_parquet_set(tmp_path / "data")
    gate = tmp_path / "gate"
    monkeypatch.setenv("RAY_TEST_PG_URL", worker_pg_uri)
    monkeypatch.setenv("CONDUIT_WORKER_PAUSE", f"read:12={gate}")  # workers only: a job holds after its 12th batch, its first chunk sealed
    cfg = config(tmp_path, f"{{name: out, type: postgresql, connection_string: '${{RAY_TEST_PG_URL}}', db_schema: {pg_schema}}}", ray_cluster.address)
    killed: list[int] = []
    committed_before_kill: list[int] = []
    finished = threading.Event()

    def chunks_committed() -> int:
        found = pg_rows(pg_uri, f"SELECT to_regclass('\"{pg_schema}\"._conduit_chunks') IS NOT NULL")
        return int(pg_rows(pg_uri, f'SELECT count(*) FROM "{pg_schema}"._conduit_chunks')[0][0]) if found[0][0] else 0

    def killer() -> None:
        while not finished.is_set():
            if gate.exists():
                if not killed:
                    deadline = time.monotonic() + 10  # the held job's stager threads go on committing
                    while time.monotonic() < deadline and chunks_committed() == 0:
                        time.sleep(0.1)
                    committed_before_kill.append(chunks_committed())
                    busy = ray_cluster.workers()
                    if busy:
                        busy[0].kill()  # type: ignore[attr-defined]  # SIGKILL: a real crash, mid-job
                        killed.append(busy[0].pid)  # type: ignore[attr-defined]
                        time.sleep(0.5)
                gate.unlink(missing_ok=True)  # let the other (and the retried) jobs go on
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        result = conduit.run(cfg)
    finally:
        finished.set()
        thread.join(10)
    res = result.resources[0]
    assert killed, "no worker was killed"
    assert committed_before_kill[0] >= 1, "the killed job had committed no chunk: the retry had nothing to skip"
    assert (result.status, res.error) == ("partial_success", None), res.error
    assert (res.rows_read, res.rows_written, res.rows_dlq) == (FILES * ROWS, good, FILES * ROWS - good)
    assert pg_rows(pg_uri, f'SELECT count(*), count(DISTINCT id) FROM "{pg_schema}".events') == [(good, good)]
    assert pg_rows(pg_uri, f"SELECT rows FROM \"{pg_schema}\"._conduit_loads WHERE load_id = '{result.run_id}_events'") == [(good,)]
    assert pg_rows(pg_uri, f'SELECT count(*) FROM "{pg_schema}"._conduit_chunks') == [(0,)]
    assert dlq_count(cfg, result.run_id) == FILES * ROWS - good
    _, checkpoints = Store(conduit.load_project(cfg).state_path).query(f"SELECT sum(rows) FROM checkpoints WHERE run_id = '{result.run_id}'")
    assert checkpoints == [(good,)]


def test_a_failing_check_in_a_worker_fails_the_resource_with_its_own_error(tmp_path: Path, ray_cluster: LocalRayCluster) -> None:
    import duckdb

    write_parquet_set(tmp_path / "data")
    cfg = config(tmp_path, "{name: out, type: duckdb, path: out.duckdb}", ray_cluster.address)
    cfg.write_text(cfg.read_text().replace("action: dlq", "action: fail"))
    result = conduit.run(cfg)
    res = result.resources[0]
    assert (result.status, res.status) == ("failed", "failed")
    assert res.error is not None
    assert res.error.startswith("events: check range"), res.error  # the job's own QualityCheckFailed, not Ray's wrapping
    assert res.error.endswith("(action fail); nothing published"), res.error
    with duckdb.connect(str(tmp_path / "out.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'events'").fetchall() == [(0,)]


def test_small_csv_files_grouped_into_one_job_keep_the_drivers_inferred_types(tmp_path: Path, ray_cluster: LocalRayCluster) -> None:
    import duckdb

    data = tmp_path / "data"
    data.mkdir()
    for f in range(20):  # small files share a job; the worker casts with the types the driver inferred
        rows = [f"{f * 100 + i},{i * 0.25},2024-01-{1 + i % 28:02d}" for i in range(100)]
        if f == 3:
            rows[10] = "310,not-a-number,2024-01-11"
        (data / f"c-{f:02d}.csv").write_text("id,amount,day\n" + "\n".join(rows) + "\n")
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(f"""
engine: {{type: ray, address: "{ray_cluster.address}"}}
sources: [{{name: lake, type: csv, path: data}}]
destinations: [{{name: out, type: duckdb, path: out.duckdb}}]
resources: [{{name: small, source: lake, destination: out, path: "*.csv", columns: {{amount: double}}}}]
""")
    result = conduit.run(cfg)
    res = result.resources[0]
    assert (result.status, res.error) == ("partial_success", None), res.error
    assert (res.rows_read, res.rows_written, res.rows_dlq) == (2000, 1999, 1)
    with duckdb.connect(str(tmp_path / "out.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*), count(DISTINCT id), typeof(any_value(day)), typeof(any_value(id)) FROM main.small").fetchall() == [(1999, 1999, "DATE", "BIGINT")]
    _, rows = Store(conduit.load_project(cfg).state_path).query(f"SELECT _conduit_source_file, _conduit_row_number FROM dlq WHERE _conduit_run_id = '{result.run_id}'")
    assert len(rows) == 1 and rows[0][0].endswith("c-03.csv") and rows[0][1] == 11, rows


def test_parquet_row_group_ranges_load_as_ray_jobs(tmp_path: Path, ray_cluster: LocalRayCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """One Parquet file cut into row-group ranges (the driver's cut); workers rebuild each range from its name."""
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    from conduit import part_ranges
    from conduit.chunking import decode_parts

    monkeypatch.setattr(part_ranges, "RANGE_ROWS", 3_000)  # the driver's only: the workers keep the default
    (tmp_path / "data").mkdir()
    pq.write_table(pa.table({"id": pa.array(range(12_000), pa.int64()), "amount": pa.array([i % 7 for i in range(12_000)], pa.int32())}), tmp_path / "data" / "big.parquet", row_group_size=1_000)
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(f"""
engine: {{type: ray, address: "{ray_cluster.address}"}}
sources: [{{name: lake, type: parquet, path: data}}]
destinations: [{{name: out, type: duckdb, path: out.duckdb}}]
resources: [{{name: events, source: lake, destination: out, path: "*.parquet", columns: {{amount: bigint}}}}]
""")
    result = conduit.run(cfg)
    assert (result.status, result.resources[0].error) == ("success", None), result.resources[0].error
    with duckdb.connect(str(tmp_path / "out.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*), count(DISTINCT id), sum(id) FROM main.events").fetchall() == [(12_000, 12_000, sum(range(12_000)))]
    with duckdb.connect(str(tmp_path / ".conduit" / "conduit.duckdb"), read_only=True) as con:
        fields = [r[0] for r in con.execute("SELECT part FROM checkpoints").fetchall()]
    parts = sorted(name.rsplit("#", 1)[-1] for field in fields for name in decode_parts(field)[0])  # small ranges share a chunk
    assert parts == ["row_groups=0-2", "row_groups=3-5", "row_groups=6-8", "row_groups=9-11"]


@pytest.mark.postgres
def test_postgresql_key_ranges_are_read_by_ray_workers(tmp_path: Path, pg_uri: str, pg_schema: str, worker_pg_uri: str, ray_cluster: LocalRayCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """``partition_column``: each key range is a part a worker reads on its own connection; every row once."""
    import duckdb
    import psycopg

    from conduit.chunking import decode_parts

    with psycopg.connect(pg_uri, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE "{pg_schema}".events AS SELECT i::bigint AS id, i % 13 AS amount FROM generate_series(1, 30000) AS i')
    monkeypatch.setenv("RAY_TEST_PG_URL", worker_pg_uri)
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(f"""
engine: {{type: ray, address: "{ray_cluster.address}"}}
sources: [{{name: pg, type: postgresql, connection_string: '${{RAY_TEST_PG_URL}}', db_schema: {pg_schema}}}]
destinations: [{{name: out, type: duckdb, path: out.duckdb}}]
resources: [{{name: events, source: pg, destination: out, partition_column: id}}]
""")
    result = conduit.run(cfg)
    assert (result.status, result.resources[0].error) == ("success", None), result.resources[0].error
    with duckdb.connect(str(tmp_path / "out.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*), count(DISTINCT id), sum(id) FROM main.events").fetchall() == [(30_000, 30_000, 30_000 * 30_001 // 2)]
    with duckdb.connect(str(tmp_path / ".conduit" / "conduit.duckdb"), read_only=True) as con:
        fields = [r[0] for r in con.execute("SELECT part FROM checkpoints").fetchall()]
    assert sorted(name.split("#", 1)[1] for field in fields for name in decode_parts(field)[0]) == sorted(f"id=[{a},{min(a + 3750, 30_001)})" for a in range(1, 30_001, 3750))
