"""The per-part batch stream: read bounded batches, cast and check them, split good/bad.

:func:`stream_part` yields :class:`Step` objects for one source part, computed in a
background thread (:func:`prefetch`) so reading and transforming overlap with the
destination's staging. Everything here works on whole batches with Polars
expressions; no row is ever a Python object.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import pyarrow as pa

from conduit.coerce import Coercer
from conduit.connectors.base import ERROR, RAW, RECHECK, ROW_NUMBER, SEQ, Part, Seekable
from conduit.errors import ConduitError, SourceError
from conduit.schema import same_type

PART_SHIFT = 40  # _conduit_seq = part index << 40 | row number: stable across resumes


@dataclass
class Bad:
    """Rows removed from a batch, with why."""

    rows: pl.DataFrame
    check: pl.Series | str
    error: pl.Series


@dataclass
class Step:
    """One transformed batch: good rows as Arrow, bad rows, and where in the part it ends."""

    good: pa.RecordBatch | None
    bad: list[Bad]
    rows_read: int
    rows_read_end: int
    warned: dict[str, int] = field(default_factory=dict)
    filtered: int = 0


Check = Callable[[pl.DataFrame], tuple[pl.DataFrame, list[Bad], dict[str, int]]]


@dataclass
class Transform:
    """What happens to every batch of a resource: casts, checks, dropped columns, merge order."""

    coercer: Coercer
    schema: pa.Schema
    checks: Check | None = None
    drop: list[str] = field(default_factory=list)
    add_seq: bool = False
    row_filter: Callable[[pl.DataFrame], pl.Series] | None = None
    views: bool = False  # emit string_view / binary_view (no copy out of Polars)

    def direct(self, schema: pa.Schema) -> bool:
        """Whether batches of ``schema`` pass unchanged (no cast, check, filter or column to add).

        Such batches skip Polars: only their string layout (or timestamp zone name) is conformed to :attr:`schema`.
        """
        if self.checks is not None or self.row_filter is not None or self.add_seq or self.drop:
            return False
        if [f.name for f in schema] != self.schema.names or self.coercer.casts(pl.DataFrame(schema.empty_table()).schema):
            return False
        return all(same_type(a.type, b.type) for a, b in zip(schema, self.schema, strict=True))

    def __call__(self, df: pl.DataFrame, part_index: int) -> tuple[pa.RecordBatch, list[Bad], dict[str, int], int]:
        """(good Arrow batch, bad rows, warning counts, rows filtered out by incremental state)."""
        filtered = 0
        bad: list[Bad] = []
        if ERROR in df.columns:
            df, bad = _split_unparsed(df)
        typed, bad_mask = self.coercer.apply(df)
        if self.row_filter is not None:  # on typed values: 10 > 9 even when the file says '10'
            keep = self.row_filter(typed)
            filtered = df.height - int(keep.sum())
            if filtered:
                df, typed, bad_mask = df.filter(keep), typed.filter(keep), bad_mask.filter(keep)
        if bad_mask.any():
            raw = df.filter(bad_mask)
            why = self.coercer.reasons(raw)
            bad.append(Bad(raw, "cast", why.get_column("reason")))
            typed = typed.filter(~bad_mask)
        warned: dict[str, int] = {}
        if self.checks is not None:
            typed, more_bad, warned = self.checks(typed)
            bad += more_bad
        if self.add_seq:
            typed = typed.with_columns((pl.lit(part_index << PART_SHIFT, pl.Int64) + pl.col(ROW_NUMBER)).alias(SEQ))
        drop = [c for c in (ROW_NUMBER, *self.drop) if c in typed.columns]
        table = typed.drop(drop).to_arrow(compat_level=compat_level(self.views))
        if table.schema != self.schema:
            table = _conform(table, self.schema)
        batch = table.combine_chunks().to_batches()
        good = batch[0] if batch else pa.RecordBatch.from_pylist([], schema=self.schema)
        return good, bad, warned, filtered


def compat_level(views: bool) -> pl.CompatLevel | None:
    """Polars' Arrow export level: the newest keeps string_view (no copy), None gives large_string."""
    return pl.CompatLevel.newest() if views else None


def _split_unparsed(df: pl.DataFrame) -> tuple[pl.DataFrame, list[Bad]]:
    """Rows a source marked unparsable (``_conduit_error``) become bad rows with their raw text."""
    mask = df.get_column(ERROR).is_not_null()
    extra = [c for c in (ERROR, RAW) if c in df.columns]
    if not mask.any():
        return df.drop(extra), []
    rows = df.filter(mask)
    bad = Bad(rows.drop(ERROR).select(RAW, pl.exclude(RAW)) if RAW in rows.columns else rows.drop(ERROR), "parse", rows.get_column(ERROR))
    return df.filter(~mask).drop(extra), [bad]


def sample(part: Part, rows: int) -> pl.DataFrame:
    """The first ``rows`` parsable rows of a lazily scanned part (for type inference)."""
    assert isinstance(part.frame, pl.LazyFrame)
    try:
        df = part.frame.head(rows).collect()
    except pl.exceptions.PolarsError:
        if part.fallback is None:
            raise
        first = next(iter(part.fallback(0, rows)), None)
        df = first if first is not None else part.frame.clear().collect()
    if RECHECK in df.columns:
        df = df.filter(~pl.col(RECHECK)).drop(RECHECK)
    if ERROR in df.columns:
        df = df.filter(pl.col(ERROR).is_null()).drop([c for c in (ERROR, RAW) if c in df.columns])
    return df


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Reorder/cast ``table`` to ``schema`` (missing columns become nulls)."""
    cols = []
    for f in schema:
        if f.name in table.column_names:
            col = table.column(f.name)
            cols.append(col if col.type == f.type else col.cast(f.type))
        else:
            cols.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(cols, schema=schema)


def frames(part: Part, batch_size: int, skip: int) -> Iterator[pl.DataFrame]:
    """Bounded batches of one part, rows numbered, the first ``skip`` rows left out.

    A lazy frame without ``_conduit_row_number`` is numbered here, in stream order
    (Polars' own row index makes its streaming Parquet scan buffer far ahead), and so
    are Arrow streams; a :class:`Seekable` one starts near ``skip`` instead of at 0.
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
                batches = part.read(skip, batch_size)
            else:
                batches = (lf.filter(pl.col(ROW_NUMBER) > skip) if skip else lf).collect_batches(chunk_size=batch_size)
            for df in batches:
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
            yield from _direct(part, transform.schema, batch_size, skip)
            return
        for df in frames(part, batch_size, skip):
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


def is_direct(part: Part, transform: Transform) -> bool:
    """Whether ``part`` is an Arrow stream whose batches need no transform (see :meth:`Transform.direct`)."""
    return not isinstance(part.frame, pl.LazyFrame) and transform.direct(part.frame.schema)


def _direct(part: Part, schema: pa.Schema, batch_size: int, skip: int) -> Iterator[Step]:
    """Steps of an Arrow part that needs no transform: its batches, conformed to ``schema``."""
    for before, rb in _arrow_batches(part, batch_size, skip, schema):
        yield Step(_conform(pa.Table.from_batches([rb]), schema).combine_chunks().to_batches()[0], [], rb.num_rows, before + rb.num_rows)


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


def prefetch(items: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Run ``items`` in a background thread, ``depth`` items ahead; errors re-raise here.

    Two are enough to keep a destination busy (on TPC-H SF1 into DuckDB the consumer
    waits ~0.1 s in all); each more costs a batch of peak RSS (~25 MiB on lineitem).
    """
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
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
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.1)


# --- parallel staging ------------------------------------------------------------

_END, _ABORT = object(), object()


class _Aborted(Exception):
    """A chunk was abandoned because an earlier chunk or the read failed."""


@dataclass
class Feed:
    """One chunk being staged by a worker: its batches arrive through a bounded queue."""

    cursor: Any
    queue: queue.Queue[Any]
    done: threading.Event = field(default_factory=threading.Event)
    ok: bool = False
    pending: Any = None
    future: Any = None


class ParallelStager:
    """Stage consecutive chunks on up to ``workers`` threads; chunks commit in order.

    The caller (one thread) reads and accounts steps, :meth:`put`\\ s each chunk's
    batches and :meth:`seal`\\ s it. Each chunk goes to ``stage(cursor, reader)`` on
    a worker (the destination uses one connection per worker). A chunk's reader ends
    only after the previous chunk has been staged, so a destination that commits after
    exhausting its reader commits chunks in order: the ledger is always a prefix and
    resume semantics are those of sequential staging. Memory is bounded: at most
    ``workers`` chunks are open, each holding at most ``depth`` queued batches.
    """

    def __init__(self, stage: Callable[[Any, pa.RecordBatchReader], int], schema: pa.Schema, workers: int, depth: int = 1):
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        self._stage = stage
        self._schema = schema
        self._depth = depth
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="conduit-stage")
        self._open: deque[Feed] = deque()
        self._slots = threading.Semaphore(workers)

    def start(self, cursor: Any) -> Feed:
        """Open a chunk and hand it to a worker (waits while every worker is busy)."""
        while not self._slots.acquire(timeout=0.1):
            self._raise_failed()
        prev = self._open[-1] if self._open else None
        feed = Feed(cursor, queue.Queue(maxsize=self._depth))
        reader = pa.RecordBatchReader.from_batches(self._schema, self._batches(feed, prev))
        feed.future = self._pool.submit(self._run, feed, reader)
        self._open.append(feed)
        return feed

    def _batches(self, feed: Feed, prev: Feed | None) -> Iterator[pa.RecordBatch]:
        while True:
            item = feed.queue.get()
            if item is _END:
                break
            if item is _ABORT:
                raise _Aborted("staging stopped")
            yield item
        if prev is not None:
            prev.done.wait()
            if not prev.ok:
                raise _Aborted("an earlier chunk failed")

    def _run(self, feed: Feed, reader: pa.RecordBatchReader) -> int:
        try:
            rows = self._stage(feed.cursor, reader)
            feed.ok = True
            return rows
        finally:
            feed.done.set()
            self._slots.release()

    def _raise_failed(self) -> None:
        for feed in self._open:
            if feed.done.is_set() and not feed.ok:
                feed.future.result()

    def put(self, feed: Feed, item: Any) -> None:
        """Queue a batch for ``feed``; raises a worker's error instead of blocking forever."""
        while True:
            try:
                feed.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                self._raise_failed()

    def seal(self, feed: Feed, pending: Any = None) -> None:
        """No more batches for ``feed``; ``pending`` comes back with it when it is staged."""
        feed.pending = pending
        self.put(feed, _END)

    def finished(self, wait: bool = False) -> Iterator[tuple[Feed, int]]:
        """Staged chunks, oldest first, that are done (all of them with ``wait``); errors raise."""
        while self._open and (wait or self._open[0].done.is_set()):
            feed = self._open[0]
            rows = feed.future.result()
            self._open.popleft()
            yield feed, rows

    def shutdown(self) -> None:
        """Abort open chunks (their transactions roll back) and stop the workers."""
        for feed in self._open:
            while True:
                try:
                    feed.queue.get_nowait()
                except queue.Empty:
                    break
            feed.queue.put(_ABORT)
        self._pool.shutdown(wait=True)
        self._open.clear()
