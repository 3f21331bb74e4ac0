"""The background checkpoint writer: rows land in order, errors surface on flush."""

from __future__ import annotations

from pathlib import Path

import pytest

from conduit.store import Store


def test_flush_waits_for_every_queued_checkpoint(tmp_path: Path) -> None:
    store = Store(tmp_path / "conduit.duckdb")
    store.start_run("r1", "ingest.yml", "abc", "0")
    writer = store.checkpointer()
    for chunk in range(5):
        writer.add("r1", "people", chunk, 10, "a.csv", 10 * (chunk + 1), None)
    writer.flush()
    assert store.checkpoints("r1", "people") == [(c, 10, "a.csv", 10 * (c + 1), None) for c in range(5)]


def test_a_failed_write_raises_on_flush(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path / "conduit.duckdb")
    store.start_run("r1", "ingest.yml", "abc", "0")

    def fail(rows: list[tuple]) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(store, "checkpoint_many", fail)
    writer = store.checkpointer()
    writer.add("r1", "people", 0, 10, "a.csv", 10, None)
    with pytest.raises(OSError, match="disk full"):
        writer.flush()


def test_checkpoints_queued_together_are_written_together_and_flush_does_not_wait(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows added within the interval share one write; flush writes them at once instead of waiting it out."""
    import time

    store = Store(tmp_path / "conduit.duckdb")
    store.start_run("r1", "ingest.yml", "abc", "0")
    writes: list[int] = []
    real = store.checkpoint_many

    def counted(rows: list[tuple]) -> None:
        writes.append(len(rows))
        real(rows)

    monkeypatch.setattr(store, "checkpoint_many", counted)
    writer = store.checkpointer(every_s=60)
    for chunk in range(20):
        writer.add("r1", "people", chunk, 10, "a.csv", 10 * (chunk + 1), None)
        time.sleep(0.01)
    started = time.monotonic()
    writer.flush()
    assert time.monotonic() - started < 10
    assert sum(writes) == 20 and len(writes) <= 2  # the first row at once, the rest together
    assert [c for c, *_ in store.checkpoints("r1", "people")] == list(range(20))


def test_a_checkpoint_written_again_replaces_the_first_and_keeps_its_mark(tmp_path: Path) -> None:
    """One statement writes many rows (:func:`conduit.store.insert_many`): NULL and text marks alike, a chunk written again replaced, read back by SQL."""
    store = Store(tmp_path / "conduit.duckdb")
    store.start_run("r1", "ingest.yml", "abc", "0")
    store.checkpoint_many([("r1", "people", c, 10, "a.csv", 10 * (c + 1), None) for c in range(300)])
    store.checkpoint_many([("r1", "people", 7, 3, "b.csv", 73, '{"id": 5}')])
    _, rows = store.query("SELECT count(*), sum(rows), count(mark), max(committed_at) IS NOT NULL FROM checkpoints")
    assert rows == [(300, 299 * 10 + 3, 1, True)]
    assert store.checkpoints("r1", "people")[7] == (7, 3, "b.csv", 73, '{"id": 5}')
    store.add_seen_files("people", ["a.csv", "b.csv"], "r1", ("pg", "public", "people"))
    store.add_seen_files("people", ["b.csv", "c.csv"], "r2", ("pg", "public", "people"))
    _, seen = store.query("SELECT file, run_id FROM files_seen ORDER BY file")
    assert seen == [("a.csv", "r1"), ("b.csv", "r1"), ("c.csv", "r2")]
