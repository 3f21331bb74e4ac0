"""How a load is cut into chunks, the unit of checkpoint and resume, and how big its batches are.

A chunk is a run of consecutive steps of one part, staged and committed together with
a ledger row naming its part and position (:func:`encode_position`).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from conduit.connectors.base import Load

T = TypeVar("T")

CHUNK_BATCHES = 16  # the first chunk (the unit of checkpoint and resume) of a part: up to this many batches (~2M rows by default)
LATER_CHUNK_BATCHES = 64  # later chunks of the part, where no stage runs in parallel (see below)
PARALLEL_CHUNK_BATCHES = 8  # chunks when several stage at once: each costs a transaction, a COPY and an encoder (typed CSV blocks are batches of ~16k rows: 2 per chunk cost 0.2-0.4 CPU-s more per SF1 load than 8)
STREAM_BATCHES = 2  # batches a parallel staging stream holds at once (queued, encoding): the default batch is split by streams x this
DLQ_CHUNK_ROWS = 2_000_000  # a chunk ends early once it holds this many dead letters (they wait in memory until it commits)
GROUP_PART_BYTES = 128 << 10  # a whole file up to this size may share its chunk with other small files...
GROUP_BYTES = 16 << 20  # ...until the group holds this many bytes...
GROUP_PARTS = 1000  # ...or this many files
PART_CHUNKS = 1 << 16  # chunk numbers reserved for the job of one part (a group uses one)
"""A destination pays a fixed price per chunk (a DuckDB INSERT, a COPY, a file). A part's
first chunk stays small, so a crash early in a load loses little; later ones are 4x
larger, which keeps a crash's loss under ~8M rows; a chunk holding
:data:`DLQ_CHUNK_ROWS` dead letters ends early. Chunks staged in parallel hold 8 batches throughout (one
batch queued per open chunk bounds their memory, not their size)."""


def batch_rows(asked: int | None, load: Load, workers: int) -> int:
    """Rows per batch: as ``asked`` (``--batch-size``), then the config, else the default split between the staging workers.

    Each worker holds its own batches (one queued, one being encoded: see
    :data:`STREAM_BATCHES`), so splitting the default keeps the rows in flight (and
    peak memory) about the same however many streams stage. A load that stages on
    fewer streams than its destination offers (a PostgreSQL append straight into its
    table) keeps the split size, which bounds memory in the same time.
    """
    if asked:
        return asked
    if "batch_size" in load.options.model_fields_set:
        return load.options.batch_size
    return max(1, load.options.batch_size // (workers if workers == 1 else workers * STREAM_BATCHES))


def encode_position(part: str, mark: list[str | None] | None) -> str:
    """The ledger's ``part`` field: the part name plus the incremental mark so far (JSON)."""
    return json.dumps({"part": part, "mark": mark}) if mark else part


def decode_position(text: str) -> tuple[str, list[str | None] | None]:
    """The part name and incremental mark of a ledger ``part`` field (see :func:`encode_position`).

    A group's field (:func:`encode_group`) gives its first part's name.
    """
    if text.startswith('{"part'):
        data = json.loads(text)
        return data["parts"][0] if "parts" in data else data["part"], data.get("mark")
    return text, None


def encode_group(parts: list[str], mark: list[str | None] | None) -> str:
    """The ledger's ``part`` field of a chunk holding several whole parts (small files), plus the mark.

    Examples
    --------
    >>> decode_parts(encode_group(["a.csv", "b.csv"], None))
    (['a.csv', 'b.csv'], None, True)
    """
    return json.dumps({"parts": parts, "mark": mark})


def decode_parts(text: str) -> tuple[list[str], list[str | None] | None, bool]:
    """(part names, mark, whether the chunk holds those parts whole) of a ledger ``part`` field.

    Examples
    --------
    >>> decode_parts("a.csv")
    (['a.csv'], None, False)
    """
    if text.startswith('{"parts"'):
        data = json.loads(text)
        return list(data["parts"]), data.get("mark"), True
    name, mark = decode_position(text)
    return [name], mark, False


def chunks(steps: Iterator[T], first: int, later: int, full: Callable[[], bool] = lambda: False) -> Iterator[Iterator[T]]:
    """Split a step stream into chunks, lazily: the first of up to ``first`` steps, the others of up to ``later``.

    A chunk also ends after any step once ``full()`` says so (its dead letters are many).
    """
    it = iter(steps)
    size = first
    while True:
        try:
            head = next(it)
        except StopIteration:
            return

        def chunk(head: T = head, size: int = size) -> Iterator[T]:
            for step in itertools.chain([head], itertools.islice(it, size - 1)):  # the next step is taken only after full() is asked
                yield step
                if full():
                    return

        yield chunk()
        size = later
