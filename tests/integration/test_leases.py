"""One live run per store and resource (run leases) and Ctrl-C, with real processes.

A first ``conduit run`` is held still at a known moment (``CONDUIT_PAUSE``: it creates a
gate file and waits until the test removes it, see conduit/crash_points.py); a second
run of the same project meanwhile must refuse (exit 1 naming the holder) or, with
``--wait``, wait. Rows are counted in PostgreSQL with psycopg and in DuckDB directly.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import psycopg
import pytest
from test_resume import FILES, ROWS_PER_FILE, make_data

from conduit.errors import LeaseHeld
from conduit.leases import STALE_S, Lease
from conduit.store import Store

PG_CONFIG = """\
sources: [{{name: files, type: csv, path: data/}}]
destinations: [{{name: pg, type: postgresql, connection_string: "{uri}", db_schema: {schema}}}]
resources:
  - {{name: events, source: files, destination: pg, path: "events-*.csv", write_mode: {mode}, batch_size: 5000}}
"""
DUCK_CONFIG = """\
sources: [{name: files, type: csv, path: data/}]
destinations: [{name: local, type: duckdb, path: out.duckdb}]
resources:
  - {name: events, source: files, destination: local, path: "events-*.csv", write_mode: replace, batch_size: 2500}
"""
GOOD = FILES * ROWS_PER_FILE - ROWS_PER_FILE // 10_000  # make_data's bad amounts are dead letters


def start(cfg: Path, *args: str, pause: str | None = None, gate: Path | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "CONDUIT_FAULT": "", "CONDUIT_PAUSE": f"{pause}={gate}" if pause else ""}
    return subprocess.Popen([sys.executable, "-m", "conduit", "run", str(cfg), "--no-progress", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def conduit(cfg: Path, *args: str, fault: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONDUIT_FAULT": fault, "CONDUIT_PAUSE": ""}
    return subprocess.run([sys.executable, "-m", "conduit", "run", str(cfg), "--no-progress", *args], capture_output=True, text=True, env=env, timeout=300)


def held_at(proc: subprocess.Popen[str], gate: Path) -> None:
    """Wait until ``proc`` sits at its pause point (its gate file exists)."""
    deadline = time.monotonic() + 240
    while not gate.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the first run never reached its pause point"
        time.sleep(0.05)


def pg_count(uri: str, schema: str) -> int:
    with psycopg.connect(uri, autocommit=True) as conn:
        exists = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = %s AND tablename = 'events'", [schema]).fetchone()
        if exists != (1,):
            return 0
        row = conn.execute(f'SELECT count(*) FROM "{schema}".events').fetchone()
        return int(row[0]) if row else 0


def store_rows(project: Path, sql: str) -> list[tuple[object, ...]]:
    with duckdb.connect(str(project / ".conduit" / "conduit.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


@pytest.mark.postgres
@pytest.mark.parametrize("mode", ["replace", "append"])
def test_second_run_while_one_is_live_exits_1_naming_it(tmp_path: Path, pg_uri: str, pg_schema: str, mode: str) -> None:
    make_data(tmp_path / "data")
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(PG_CONFIG.format(uri=pg_uri, schema=pg_schema, mode=mode))
    gate = tmp_path / "gate"
    first = start(cfg, pause="staged:2", gate=gate)
    try:
        held_at(first, gate)
        second = conduit(cfg)
        (run_id,) = store_rows(tmp_path, "SELECT run_id FROM runs")[0]
    finally:
        gate.unlink(missing_ok=True)
        _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert second.returncode == 1, second.stderr
    line = second.stderr.strip().splitlines()[-1]
    assert line.startswith("error: resource events is being loaded by run ")
    assert run_id in line and f"pid {first.pid}" in line and socket.gethostname() in line
    assert pg_count(pg_uri, pg_schema) == GOOD  # the first run's rows, once
    assert store_rows(tmp_path, "SELECT count(*), min(status) FROM runs") == [(1, "partial_success")]
    assert store_rows(tmp_path, "SELECT count(*) FROM leases") == [(0,)]  # released


@pytest.mark.postgres
def test_wait_waits_for_the_live_run_then_loads(tmp_path: Path, pg_uri: str, pg_schema: str) -> None:
    make_data(tmp_path / "data")
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(PG_CONFIG.format(uri=pg_uri, schema=pg_schema, mode="append"))
    gate = tmp_path / "gate"
    first = start(cfg, pause="staged:2", gate=gate)
    try:
        held_at(first, gate)
        second = start(cfg, "--wait")
        assert second.stderr is not None
        line = second.stderr.readline()
        assert "is being loaded by run" in line and "waiting" in line, line
    finally:
        gate.unlink(missing_ok=True)
        _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    _, err2 = second.communicate(timeout=300)
    assert second.returncode == 0, err2
    assert pg_count(pg_uri, pg_schema) == 2 * GOOD  # two whole appends, neither resumed the other
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        loads = conn.execute(f'SELECT count(DISTINCT run_id), sum(rows) FROM "{pg_schema}"._conduit_loads').fetchone()
    assert loads == (2, 2 * GOOD)


def test_a_dead_owners_lease_is_taken_over_and_its_run_resumed(tmp_path: Path) -> None:
    make_data(tmp_path / "data")
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(DUCK_CONFIG)
    crashed = conduit(cfg, fault="staged:3")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert store_rows(tmp_path, "SELECT count(*) FROM leases") == [(1,)]  # left by the killed run
    resumed = conduit(cfg)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming interrupted run" in resumed.stderr
    with duckdb.connect(str(tmp_path / "out.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*), count(DISTINCT id) FROM events").fetchone() == (GOOD, GOOD)


def test_a_lease_elsewhere_is_stale_only_without_heartbeat(tmp_path: Path) -> None:
    store = Store(tmp_path / "conduit.duckdb")
    Lease(store, "other", ["events"]).acquire()
    with store.connect() as con:  # the owner runs on another host: its pid means nothing here
        con.execute("UPDATE leases SET host = 'elsewhere', pid = 1")
    with pytest.raises(LeaseHeld, match=r"run other \(pid 1 on host elsewhere"):
        Lease(store, "mine", ["events", "people"]).acquire()
    assert store.query("SELECT count(*) FROM leases WHERE run_id = 'mine'")[1] == [(0,)]  # all or nothing
    old = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=STALE_S + 1)
    with store.connect() as con:
        con.execute("UPDATE leases SET heartbeat_at = ?", [old])
    Lease(store, "mine", ["events", "people"]).acquire()
    assert store.query("SELECT resource, run_id FROM leases ORDER BY resource")[1] == [("events", "mine"), ("people", "mine")]


def test_ctrl_c_marks_the_run_interrupted_and_a_later_run_resumes_it(tmp_path: Path) -> None:
    make_data(tmp_path / "data")
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(DUCK_CONFIG)
    gate = tmp_path / "gate"
    first = start(cfg, "--workers", "1", pause="staged:3", gate=gate)  # parts one at a time: exactly 3 chunks staged
    try:
        held_at(first, gate)
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=120)
    finally:
        gate.unlink(missing_ok=True)
    assert first.returncode == 130, err
    ((run_id, status),) = store_rows(tmp_path, "SELECT run_id, status FROM runs")
    assert status == "interrupted"
    assert store_rows(tmp_path, "SELECT resource, status FROM resource_runs") == [("events", "interrupted")]
    assert store_rows(tmp_path, "SELECT count(*) FROM leases") == [(0,)]
    resumed = conduit(cfg)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming interrupted run {run_id}" in resumed.stderr
    assert "resuming after 3 staged chunk(s)" in resumed.stderr
    with duckdb.connect(str(tmp_path / "out.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*), count(DISTINCT id) FROM events").fetchone() == (GOOD, GOOD)
    assert store_rows(tmp_path, "SELECT run_id, status FROM runs") == [(run_id, "partial_success")]


def test_dead_letters_belong_to_their_store(tmp_path: Path) -> None:
    """Two configs in one folder with their own store files keep their own dead letters."""
    (tmp_path / "a.csv").write_text("id,n\n1,x\n2,2\n")
    (tmp_path / "b.csv").write_text("id,n\n1,1\n2,y\n3,z\n")
    for name in ("a", "b"):
        (tmp_path / f"{name}.yml").write_text(
            f"state_path: .conduit/{name}.duckdb\nsources: [{{name: f, type: csv, path: .}}]\n"
            f"destinations: [{{name: local, type: duckdb, path: {name}_out.duckdb}}]\n"
            f"resources: [{{name: r, source: f, destination: local, path: {name}.csv, columns: {{n: bigint}}}}]\n"
        )
        assert conduit(tmp_path / f"{name}.yml").returncode == 0
    for name, bad in (("a", 1), ("b", 2)):
        query = subprocess.run([sys.executable, "-m", "conduit", "query", "SELECT count(*) AS n FROM dlq", "-c", str(tmp_path / f"{name}.yml"), "--format", "csv"], capture_output=True, text=True, timeout=120)
        assert query.returncode == 0, query.stderr
        assert query.stdout.split() == ["n", str(bad)]
        (part,) = (tmp_path / ".conduit" / f"{name}.dlq").glob("*/r.parquet")
        with duckdb.connect() as con:
            assert con.execute(f"SELECT count(*) FROM '{part}'").fetchone() == (bad,)
    assert not (tmp_path / ".conduit" / "dlq").exists()
