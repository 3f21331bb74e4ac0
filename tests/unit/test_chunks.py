"""How a part's batches are cut into chunks (the unit of checkpoint and resume)."""

from __future__ import annotations

import pathlib
from collections.abc import Callable

import polars as pl

from conduit.chunking import CHUNK_BATCHES, LATER_CHUNK_BATCHES, chunks
from conduit.dead_letters import DeadLetters


def sizes(n: int, first: int, later: int, full: Callable[[], bool] = lambda: False) -> list[int]:
    return [len(list(chunk)) for chunk in chunks(iter(range(n)), first, later, full)]


def test_first_chunk_is_small_and_later_ones_larger() -> None:
    assert sizes(200, 16, 64) == [16, 64, 64, 56]
    assert sizes(24, 16, 64) == [16, 8]  # a short part is chunked as before
    assert sizes(5, 2, 2) == [2, 2, 1]
    assert sizes(0, 16, 64) == []


def test_every_step_once_in_order() -> None:
    got = [step for chunk in chunks(iter(range(1000)), CHUNK_BATCHES, LATER_CHUNK_BATCHES) for step in chunk]
    assert got == list(range(1000))


def test_a_chunk_ends_early_once_its_dead_letters_are_many() -> None:
    """Dead letters wait in memory until their chunk commits: a full queue ends the chunk after the current step."""
    consumed: list[int] = []
    steps = iter(range(200))

    def counted() -> object:
        for step in steps:
            consumed.append(step)
            yield step

    got = [len(list(chunk)) for chunk in chunks(counted(), 16, 64, full=lambda: len(consumed) in (5, 30))]
    assert got == [5, 25, 64, 64, 42]
    assert consumed == list(range(200))


def test_dead_letters_count_their_queued_rows(tmp_path: pathlib.Path) -> None:
    dlq = DeadLetters(tmp_path, "run", "res")
    assert dlq.pending_rows == 0
    rows = pl.DataFrame({"a": ["x", "y", "z"]})
    dlq.add(rows, "f.csv", pl.Series([1, 2, 3]), "cast", pl.Series(["bad"] * 3))
    assert dlq.pending_rows == 3
    dlq.flush_chunk(0)
    assert dlq.pending_rows == 0
