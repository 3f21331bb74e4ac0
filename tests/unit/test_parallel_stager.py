"""ParallelStager: chunks stage concurrently but commit in order; errors surface, later chunks abort."""

from __future__ import annotations

import threading
import time

import pyarrow as pa
import pytest

from conduit.workers import ParallelStager

SCHEMA = pa.schema([("n", pa.int64())])


def batch(n: int) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict({"n": [n]}, schema=SCHEMA)


def test_chunks_commit_in_order_and_run_concurrently() -> None:
    commits: list[int] = []
    active, peak = [0], [0]
    lock = threading.Lock()

    def stage(cursor: int, reader: pa.RecordBatchReader) -> int:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        rows = sum(b.num_rows for b in reader)  # ends only after the previous chunk staged
        time.sleep(0.05 if cursor % 2 == 0 else 0.0)
        with lock:
            commits.append(cursor)
            active[0] -= 1
        return rows

    stager = ParallelStager(stage, SCHEMA, workers=3)
    done = []
    try:
        for chunk in range(8):
            feed = stager.start(chunk)
            for i in range(3):
                stager.put(feed, batch(i))
            stager.seal(feed, pending=f"dlq{chunk}")
            done += [(f.cursor, rows, f.pending) for f, rows in stager.finished()]
        done += [(f.cursor, rows, f.pending) for f, rows in stager.finished(wait=True)]
    finally:
        stager.shutdown()
    assert done == [(c, 3, f"dlq{c}") for c in range(8)]
    assert peak[0] > 1


def test_a_failed_chunk_raises_in_order_and_aborts_the_next() -> None:
    seen: list[tuple[int, str]] = []

    def stage(cursor: int, reader: pa.RecordBatchReader) -> int:
        try:
            rows = sum(b.num_rows for b in reader)
        except Exception as exc:
            seen.append((cursor, type(exc).__name__))
            raise
        if cursor == 1:
            raise ValueError("chunk 1 is bad")
        seen.append((cursor, "ok"))
        return rows

    stager = ParallelStager(stage, SCHEMA, workers=2)
    with pytest.raises(ValueError, match="chunk 1 is bad"):
        try:
            for chunk in range(5):
                feed = stager.start(chunk)
                stager.put(feed, batch(chunk))
                stager.seal(feed)
                list(stager.finished())
            list(stager.finished(wait=True))
        finally:
            stager.shutdown()
    assert (0, "ok") in seen
    assert all(c < 2 or status != "ok" for c, status in seen)


@pytest.mark.parametrize(
    ("cli", "resource", "workers", "want"),
    [
        pytest.param(None, None, 1, 122_880, id="default-one-stream"),
        pytest.param(None, None, 2, 30_720, id="default-split-between-streams"),
        pytest.param(None, 5_000, 2, 5_000, id="configured-is-kept"),
        pytest.param(700, 5_000, 2, 700, id="command-line-wins"),
    ],
)
def test_batch_rows(cli: int | None, resource: int | None, workers: int, want: int) -> None:

    from conduit.chunking import batch_rows
    from conduit.config import DEFAULT_BATCH_SIZE, ResolvedTable
    from conduit.connectors.base import Load

    options = ResolvedTable() if resource is None else ResolvedTable(batch_size=resource)
    load = Load("l", "r", "res", "t", options, None)
    assert DEFAULT_BATCH_SIZE == 122_880
    assert batch_rows(cli, load, workers) == want
