"""Parallel staging: consecutive chunks staged on several threads, committed in order."""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar, cast

import pyarrow as pa

C = TypeVar("C")
"""The cursor type: what identifies a chunk to the ``stage`` function."""

_END, _ABORT = object(), object()


class _Aborted(Exception):
    """A chunk was abandoned because an earlier chunk or the read failed."""


@dataclass
class Feed(Generic[C]):
    """One chunk being staged by a worker: its batches arrive through a bounded queue."""

    cursor: C
    queue: queue.Queue[object]
    done: threading.Event = field(default_factory=threading.Event)
    ok: bool = False
    pending: object = None
    future: Future[int] = field(default_factory=Future)  # replaced by the worker's when submitted


class ParallelStager(Generic[C]):
    """Stage consecutive chunks on up to ``workers`` threads; chunks commit in order.

    The caller (one thread) reads and accounts steps, :meth:`put`\\ s each chunk's
    batches and :meth:`seal`\\ s it. Each chunk goes to ``stage(cursor, reader)`` on
    a worker (the destination uses one connection per worker). A chunk's reader ends
    only after the previous chunk has been staged, so a destination that commits after
    exhausting its reader commits chunks in order: the ledger is always a prefix and
    resume semantics are those of sequential staging. Memory is bounded: at most
    ``workers`` chunks are open, each holding at most ``depth`` queued batches.
    """

    def __init__(self, stage: Callable[[C, pa.RecordBatchReader], int], schema: pa.Schema, workers: int, depth: int = 1):
        self._stage = stage
        self._schema = schema
        self._depth = depth
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="conduit-stage")
        self._open: deque[Feed[C]] = deque()
        self._slots = threading.Semaphore(workers)

    def start(self, cursor: C) -> Feed[C]:
        """Open a chunk and hand it to a worker (waits while every worker is busy)."""
        while not self._slots.acquire(timeout=0.1):
            self._raise_failed()
        prev = self._open[-1] if self._open else None
        feed: Feed[C] = Feed(cursor, queue.Queue(maxsize=self._depth))
        reader = pa.RecordBatchReader.from_batches(self._schema, self._batches(feed, prev))
        feed.future = self._pool.submit(self._run, feed, reader)
        self._open.append(feed)
        return feed

    def _batches(self, feed: Feed[C], prev: Feed[C] | None) -> Iterator[pa.RecordBatch]:
        while True:
            item = feed.queue.get()
            if item is _END:
                break
            if item is _ABORT:
                raise _Aborted("staging stopped")
            yield cast(pa.RecordBatch, item)
        if prev is not None:
            prev.done.wait()
            if not prev.ok:
                raise _Aborted("an earlier chunk failed")

    def _run(self, feed: Feed[C], reader: pa.RecordBatchReader) -> int:
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

    def put(self, feed: Feed[C], item: object) -> None:
        """Queue a batch for ``feed``; raises a worker's error instead of blocking forever."""
        while True:
            try:
                feed.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                self._raise_failed()

    def seal(self, feed: Feed[C], pending: object = None) -> None:
        """No more batches for ``feed``; ``pending`` comes back with it when it is staged."""
        feed.pending = pending
        self.put(feed, _END)

    def finished(self, wait: bool = False) -> Iterator[tuple[Feed[C], int]]:
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
