"""Reading one part: bounded, numbered batches, transformed into steps, read ahead in a thread.

:func:`stream_part` yields a :class:`~conduit.transform.Step` per batch of a source part;
:func:`prefetch` computes them in a background thread so that reading and transforming
overlap with the destination's staging.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Mapping
from typing import TypeVar, cast

import polars as pl
import pyarrow as pa

from conduit.connectors.base import RECHECK, ROW_NUMBER, Part, Seekable
from conduit.errors import ConduitError, SourceError
from conduit.transform import Step, Transform, conform

T = TypeVar("T")


def frames(part: Part, batch_size: int, skip: int, types: Mapping[str, pl.DataType] | None = None) -> Iterator[pl.DataFrame | pa.Table]:
    """Bounded batches of one part, rows numbered, the first ``skip`` rows left out.

    A lazy frame without ``_conduit_row_number`` is numbered here, in stream order
    (Polars' own row index makes its streaming Parquet scan buffer far ahead), and so
    are Arrow streams; a :class:`Seekable` one starts near ``skip`` instead of at 0.
    ``types``: the types the columns will be cast to, handed to the part's reader,
    which may then give Arrow tables already typed (see :meth:`Part.read`).
    """
    if isinstance(part.frame, pl.LazyFrame):
        lf = part.frame
        if ROW_NUMBER not in lf.collect_schema().names():
            offset = skip
            for df in (lf.slice(skip) if skip else lf).collect_batches(chunk_size=batch_size):
                yield df.with_columns(pl.int_range(offset + 1, offset + df.height + 1, dtype=pl.Int64).alias(ROW_NUMBER))
                offset += df.height
            return
        done = skip
        try:
            if part.read is not None:
                batches = part.read(skip, batch_size, types)
            else:
                batches = (lf.filter(pl.col(ROW_NUMBER) > skip) if skip else lf).collect_batches(chunk_size=batch_size)
            for df in batches:
                if isinstance(df, pa.Table):
                    done = _first_row(df) + df.num_rows - 1
                    yield df
                    continue
                if RECHECK in df.columns:
                    if part.fallback is not None and df.get_column(RECHECK).any():
                        first = int(df.filter(pl.col(RECHECK)).get_column(ROW_NUMBER).min())  # type: ignore[arg-type]
                        yield df.filter(pl.col(ROW_NUMBER) < first).drop(RECHECK)
                        yield from part.fallback(first - 1, batch_size)
                        return
                    df = df.drop(RECHECK)
                if df.height:
                    done = int(df.get_column(ROW_NUMBER).max())  # type: ignore[arg-type]
                yield df
        except pl.exceptions.PolarsError:
            if part.fallback is None:
                raise
            yield from part.fallback(done, batch_size)
        return
    for before, rb in _arrow_batches(part, batch_size, skip):
        converted = pl.from_arrow(rb)
        assert isinstance(converted, pl.DataFrame)
        yield converted.with_columns(pl.int_range(before + 1, before + converted.height + 1, dtype=pl.Int64).alias(ROW_NUMBER))


def stream_part(part: Part, part_index: int, transform: Transform, batch_size: int, skip: int) -> Iterator[Step]:
    """Transformed steps of one part; source errors become :class:`SourceError` naming the part."""
    end = skip
    try:
        if is_direct(part, transform):
            yield from _direct(part, transform, part_index, batch_size, skip)
            return
        for df in frames(part, batch_size, skip, transform.coercer.targets):
            if isinstance(df, pa.Table):  # typed by the part's reader
                if df.num_rows:
                    yield _typed_step(df, transform, part_index)
                continue
            if df.height == 0:
                continue
            end = int(df.get_column(ROW_NUMBER).max())  # type: ignore[arg-type]
            good, bad, warned, filtered = transform(df, part_index)
            yield Step(good, bad, df.height, end, warned, filtered)
    except ConduitError:
        raise
    except (pl.exceptions.PolarsError, OSError, pa.ArrowException) as exc:
        msg = f"cannot read {part.name}: {' '.join(str(exc).split())[:500]}"
        raise SourceError(msg) from None


def _first_row(table: pa.Table) -> int:
    """The row number of a numbered Arrow table's first row."""
    return int(table.column(ROW_NUMBER)[0].as_py())


def _typed_step(table: pa.Table, transform: Transform, part_index: int) -> Step:
    """The step of a numbered Arrow table a reader typed: straight through when it needs no transform, else through Polars."""
    before = _first_row(table) - 1
    rows = table.drop_columns([ROW_NUMBER])
    if transform.direct(rows.schema):
        return _direct_step(rows.combine_chunks().to_batches()[0], before, transform, part_index, nul_free=True)  # a typed table holds no NUL (see Part)
    converted = pl.from_arrow(table)
    assert isinstance(converted, pl.DataFrame)
    good, bad, warned, filtered = transform(converted, part_index)
    return Step(good, bad, table.num_rows, before + table.num_rows, warned, filtered)


def is_direct(part: Part, transform: Transform) -> bool:
    """Whether ``part`` is an Arrow stream whose batches need no transform (see :meth:`Transform.direct`)."""
    return not isinstance(part.frame, pl.LazyFrame) and transform.direct(part.frame.schema)


def _direct(part: Part, transform: Transform, part_index: int, batch_size: int, skip: int) -> Iterator[Step]:
    """Steps of an Arrow part that needs no transform: its batches, conformed to the transform's schema.

    A batch holding a NUL the destination cannot store goes through the transform, which dead-letters those rows.
    """
    for before, rb in _arrow_batches(part, batch_size, skip, transform.schema):
        yield _direct_step(rb, before, transform, part_index)


def _direct_step(rb: pa.RecordBatch, before: int, transform: Transform, part_index: int, nul_free: bool = False) -> Step:
    """The step of a batch that needs no transform (rows ``before + 1`` on), conformed to the transform's schema; one holding a NUL the destination cannot store goes through the transform (unless the reader vouches for ``nul_free``)."""
    if transform.nul_columns and not nul_free and transform.has_nul(rb):
        converted = pl.from_arrow(rb)
        assert isinstance(converted, pl.DataFrame)
        good, bad, warned, filtered = transform(converted.with_columns(pl.int_range(before + 1, before + rb.num_rows + 1, dtype=pl.Int64).alias(ROW_NUMBER)), part_index)
        return Step(good, bad, rb.num_rows, before + rb.num_rows, warned, filtered)
    return Step(conform(pa.Table.from_batches([rb]), transform.schema).combine_chunks().to_batches()[0], [], rb.num_rows, before + rb.num_rows)


def _arrow_batches(part: Part, batch_size: int, skip: int, want: pa.Schema | None = None) -> Iterator[tuple[int, pa.RecordBatch]]:
    """(rows before it, batch) for the non-empty batches of an Arrow part after its first ``skip`` rows.

    A :class:`Seekable` part starts near ``skip`` (and lays strings out as ``want`` does, where it can); any other is read from its start.
    """
    before, batches = part.frame.batches(skip, batch_size, want) if isinstance(part.frame, Seekable) else (0, iter(part.frame))  # type: ignore[arg-type]
    for rb in batches:
        cut = min(max(skip - before, 0), rb.num_rows)  # rows of this batch already staged
        if cut:
            before, rb = before + cut, rb.slice(cut)
        if rb.num_rows:
            yield before, rb
        before += rb.num_rows


_DONE = object()


def prefetch(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Run ``items`` in a background thread, ``depth`` items ahead; errors re-raise here.

    Two are enough to keep a destination busy; each more costs a batch of peak memory.
    """
    q: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            q.put(exc)

    thread = threading.Thread(target=work, daemon=True, name="conduit-prefetch")
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield cast("T", item)
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.1)
