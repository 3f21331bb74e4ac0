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
