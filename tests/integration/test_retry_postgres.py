"""Retries (issue 17, item 6): a PostgreSQL backend terminated mid-load (SQLSTATE 57P01,
connection lost) is retried with the destination's ``retry`` settings and the rows land
exactly once; a constraint violation is never retried. Counted with psycopg directly."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import psycopg
import pytest

import conduit
from conduit import crash_points
from conduit.progress import Reporter

pytestmark = pytest.mark.postgres

FILES, ROWS = 4, 20_000  # ~250 KiB files: each its own part (smaller files share one chunk)
CONFIG = """\
sources: [{{name: files, type: csv, path: data/}}]
destinations:
  - {{name: pg, type: postgresql, connection_string: "{uri}", db_schema: {schema}, retry: {{attempts: 3, backoff_s: 0.01, max_backoff_s: 0.05}}}}
resources:
  - {{name: events, source: files, destination: pg, path: "events-*.csv", batch_size: 1000}}
"""


class Notes(Reporter):
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.retries: list[str | None] = []

    def message(self, text: str, resource: str | None = None, event: str = "message") -> None:
        self.lines.append(text)
        if event == "retry":
            self.retries.append(resource)


def _project(tmp_path: Path, uri: str, schema: str) -> Path:
    (tmp_path / "data").mkdir()
    for f in range(FILES):
        pl.DataFrame({"id": pl.int_range(f * ROWS, (f + 1) * ROWS, eager=True)}).with_columns(pl.format("n{}", pl.col("id")).alias("name")).write_csv(tmp_path / "data" / f"events-{f}.csv")
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(CONFIG.format(uri=f"{uri}?application_name=conduit_{schema}", schema=schema))
    return cfg


def _terminate_at(monkeypatch: pytest.MonkeyPatch, uri: str, schema: str, point: str, nth: int) -> list[int]:
    """At the ``nth`` ``point``, terminate (from another connection) every backend of the load (its application_name)."""
    killed: list[int] = []
    seen = {"n": 0}
    faults = crash_points
    original = faults.point

    def hook(name: str) -> None:
        original(name)
        if name != point:
            return
        seen["n"] += 1
        if seen["n"] == nth:
            with psycopg.connect(uri, autocommit=True) as conn:
                rows = conn.execute(
                    "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND application_name = %s",
                    [f"conduit_{schema}"],
                ).fetchall()
            killed.extend(r[0] for r in rows if r[1])

    monkeypatch.setattr(faults, "point", hook)
    return killed


@pytest.mark.parametrize("existing", [False, True], ids=["staged-new-table", "direct-append"])
def test_terminated_backend_is_retried_and_loads_once(tmp_path: Path, pg_uri: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch, existing: bool) -> None:
    cfg = _project(tmp_path, pg_uri, pg_schema)
    if existing:
        with psycopg.connect(pg_uri, autocommit=True) as conn:
            conn.execute(f'CREATE TABLE "{pg_schema}".events (id bigint, name text)')
    killed = _terminate_at(monkeypatch, pg_uri, pg_schema, "staged", 2)
    notes = Notes()
    result = conduit.run(cfg, reporter=notes)
    assert killed, "no loading backend was terminated"
    assert result.status == "success", result.resources[0].error
    assert sum("retrying" in line for line in notes.lines) == 1, notes.lines
    assert notes.retries == ["events"]  # a retry event (a WARNING record of the conduit logger), naming its resource
    with psycopg.connect(pg_uri) as conn:
        assert conn.execute(f'SELECT count(*), count(DISTINCT id), min(id), max(id) FROM "{pg_schema}".events').fetchone() == (FILES * ROWS, FILES * ROWS, 0, FILES * ROWS - 1)
        assert conn.execute(f'SELECT count(*), sum(rows) FROM "{pg_schema}"._conduit_loads').fetchone() == (1, FILES * ROWS)
    assert result.resources[0].rows_written == FILES * ROWS


def test_constraint_violation_is_not_retried(tmp_path: Path, pg_uri: str, pg_schema: str) -> None:
    cfg = _project(tmp_path, pg_uri, pg_schema)
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE "{pg_schema}".events (id bigint PRIMARY KEY, name text)')
        conn.execute(f"INSERT INTO \"{pg_schema}\".events VALUES (7, 'already here')")
    notes = Notes()
    result = conduit.run(cfg, reporter=notes)
    assert result.status == "failed"
    assert "23505" in (result.resources[0].error or "")
    assert not [line for line in notes.lines if "retrying" in line]
    with psycopg.connect(pg_uri) as conn:
        assert conn.execute(f'SELECT count(*), min(name) FROM "{pg_schema}".events').fetchone() == (1, "already here")


def test_a_statement_on_a_connection_whose_backend_died_is_retryable(pg_uri: str) -> None:
    """psycopg says 'the connection is closed' (no SQLSTATE) once its backend is gone: a lost connection, retried."""
    from conduit.connectors.postgres.connection import error

    conn = psycopg.connect(pg_uri, autocommit=True)
    pid = conn.info.backend_pid
    with psycopg.connect(pg_uri, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    failures = []
    for _ in range(2):  # the first statement meets the terminated backend, the next a closed connection
        try:
            conn.execute("SELECT 1")
        except psycopg.Error as exc:
            failures.append(error(exc, "staging"))
    conn.close()
    assert failures and all(f.retryable for f in failures), [str(f) for f in failures]
    assert any("the connection is closed" in str(f) for f in failures), [str(f) for f in failures]
