"""How a part's batches are cut into chunks (the unit of checkpoint and resume)."""

from __future__ import annotations

from conduit._staging import CHUNK_BATCHES, LATER_CHUNK_BATCHES, _chunks


def sizes(n: int, first: int, later: int) -> list[int]:
    return [len(list(chunk)) for chunk in _chunks(iter(range(n)), first, later)]


def test_first_chunk_is_small_and_later_ones_larger() -> None:
    assert sizes(200, 16, 64) == [16, 64, 64, 56]
    assert sizes(24, 16, 64) == [16, 8]  # a short part is chunked as before
    assert sizes(5, 2, 2) == [2, 2, 1]
    assert sizes(0, 16, 64) == []


def test_every_step_once_in_order() -> None:
    got = [step for chunk in _chunks(iter(range(1000)), CHUNK_BATCHES, LATER_CHUNK_BATCHES) for step in chunk]
    assert got == list(range(1000))
