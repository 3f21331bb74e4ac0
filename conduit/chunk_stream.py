"""The chunk loop of one load: every part's steps staged chunk by chunk, then one publish.

:class:`ChunkStream` reads every part through :mod:`conduit.batches` and
:mod:`conduit.transform`, cuts the step stream into chunks (the unit of checkpoint and
resume), stages each chunk on the destination (on this thread, or on several workers
through :class:`~conduit.workers.ParallelStager`), checkpoints it in the store and
finally publishes once. Counts, dead letters and incremental marks are accounted per
step. :class:`~conduit.resource_load.ResourceLoad` decides where it starts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from conduit import crash_points
from conduit.batches import is_direct, prefetch, stream_part
from conduit.chunking import CHUNK_BATCHES, DLQ_CHUNK_ROWS, LATER_CHUNK_BATCHES, PARALLEL_CHUNK_BATCHES, batch_rows, chunks, decode_position, encode_position
from conduit.connectors.base import Destination, Load, Part, Seekable, Source, StagedChunk, Task
from conduit.dead_letters import DeadLetters
from conduit.errors import ConduitError, QualityCheckFailed, SourceError
from conduit.incremental import State
from conduit.quality import Checks
from conduit.results import ResourceResult
from conduit.transform import Step, Transform, make_transform
from conduit.workers import ParallelStager

if TYPE_CHECKING:
    import pyarrow as pa

    from conduit.config import ResourceConfig
    from conduit.progress import Reporter
    from conduit.project import Project
    from conduit.store import Checkpointer, Store


class RunContext(Protocol):
    """What a resource load needs from its run (:class:`conduit.runner.Context`)."""

    project: Project
    run_id: str
    reporter: Reporter
    batch_size: int | None
    full_refresh: bool
    resumed_status: dict[str, str]
    store: Store

    @property
    def checkpointer(self) -> Checkpointer: ...
    def source(self, name: str) -> Source: ...
    def destination(self, name: str) -> Destination: ...


@dataclass
class Target:
    """What one load reads from and writes to."""

    source: Source
    dest: Destination
    task: Task
    load: Load
    state: State


@dataclass
class Resume:
    """Where the chunk loop starts: rows already staged per part, the next chunk's number, checks and dead letters so far."""

    checks: Checks
    dlq: DeadLetters
    positions: dict[str, int]
    chunk_no: int


class ChunkStream:
    """The chunk loop of one load: every part's steps staged chunk by chunk, then the publish."""

    def __init__(self, ctx: RunContext, res: ResourceConfig, result: ResourceResult, target: Target, resume: Resume):
        self.ctx, self.res, self.result = ctx, res, result
        self.source, self.dest, self.task, self.load, self.state = target.source, target.dest, target.task, target.load, target.state
        self.checks, self.dlq, self.positions, self.chunk_no = resume.checks, resume.dlq, resume.positions, resume.chunk_no

    def run(self) -> bool:
        """Stage chunk after chunk, then publish; False when the source had no parts."""
        ctx, res, result, dest, load, state, dlq = self.ctx, self.res, self.result, self.dest, self.load, self.state, self.dlq
        transform: Transform | None = None
        batch_size = 0
        names: list[str] = []
        header_only = True  # every part is a CSV file with bytes (a header) but, so far, no rows
        stager: ParallelStager[StagedChunk] | None = None
        try:
            for part_index, part in enumerate(self.source.parts(self.task)):
                result.bytes_read += part.bytes
                names.append(part.name)
                header_only = header_only and part.text_columns and part.bytes > 0
                if transform is None:
                    transform = make_transform(res, self.source, dest, part, load, self.checks.evaluator(), ctx.reporter.message)
                    workers = max(1, dest.stage_streams(load))
                    batch_size = batch_rows(ctx.batch_size, load, max(1, dest.capabilities.parallel_stage))  # split as for every stream, even where this load uses fewer
                    if workers > 1:
                        stager = ParallelStager(lambda cursor, reader: dest.stage(load, cursor, reader), transform.schema, workers)
                transform.row_filter = state.row_filter(part.name)
                skip = self.positions.get(part.name, 0)
                if stager is None and _read_by_destination(part, transform, dest, state, skip):
                    self._stage_file(part, StagedChunk(self.chunk_no, part.name, 0, 0))
                    self.chunk_no += 1
                    continue
                steps = stream_part(part, part_index, transform, batch_size, skip)
                if stager is None:  # a stager's queues already overlap reading with staging; a prefetch queue would hold more batches
                    steps = prefetch(steps)
                first, later = (PARALLEL_CHUNK_BATCHES, PARALLEL_CHUNK_BATCHES) if stager else (CHUNK_BATCHES, LATER_CHUNK_BATCHES)
                for chunk_steps in chunks(steps, first, later, full=lambda: dlq.pending_rows >= DLQ_CHUNK_ROWS):
                    cursor = StagedChunk(self.chunk_no, part.name, skip, 0)
                    if stager is not None:
                        feed = stager.start(cursor)
                        for step in chunk_steps:
                            self._account(step, cursor)
                            stager.put(feed, step.good)
                        self._seal_dead_letters(cursor.chunk)  # before the chunk's reader ends, so before it commits
                        stager.seal(feed)
                        for done, rows in stager.finished():
                            self._staged(done.cursor, rows)
                    else:
                        self._stage_one(chunk_steps, transform.schema, cursor)
                    self.chunk_no += 1
            for done, rows in stager.finished(wait=True) if stager else []:
                self._staged(done.cursor, rows)
        finally:
            if stager is not None:
                stager.shutdown()
        if transform is None:
            return False
        if result.rows_read == 0 and header_only and state.before is None:
            msg = f"{res.name}: no data rows in {', '.join(names)} (header only)"
            raise SourceError(msg)
        return self._publish(transform)

    def _publish(self, transform: Transform) -> bool:
        load, result, state = self.load, self.result, self.state
        load.schema = transform.schema
        self.checks.enforce_limits(result, final=True)
        path = self.dlq.gather()
        result.dlq_path = str(path) if path else None
        self.ctx.checkpointer.flush()  # resume after a crash past publish counts rows from them
        crash_points.point("publish")
        published = self.dest.publish(load)
        crash_points.point("published")
        self.dlq.cleanup()
        if state.null_rows:
            result.checks[f"null {state.column}"] = state.null_rows
        if load.write_mode == "merge":
            result.rows_written = published  # after last-row-wins deduplication
        return True

    def _stage_file(self, part: Part, cursor: StagedChunk) -> None:
        """Stage a whole file as one chunk, read by the destination; progress from its fraction done."""
        assert part.local is not None
        crash_points.point("read")
        reporter, name = self.ctx.reporter, self.res.name
        total, shown = part.frame.num_rows if isinstance(part.frame, Seekable) else None, 0

        def progress(fraction: float) -> None:
            nonlocal shown
            rows = int(fraction * total) - shown if total else 0
            if rows > 0:
                reporter.advance(name, rows)
                shown += rows

        rows = self.dest.stage_file(self.load, cursor, part.local, progress)
        self.result.rows_read += rows
        reporter.advance(name, max(rows - shown, 0))
        self._staged(cursor, rows)

    def _stage_one(self, steps: Iterator[Step], schema: pa.Schema, cursor: StagedChunk) -> None:
        """Stage one chunk on this thread; the reader's own error wins over the destination's wrapping."""
        import pyarrow as pa

        failed: list[ConduitError] = []

        def batches() -> Iterator[pa.RecordBatch]:
            try:
                for step in steps:
                    self._account(step, cursor)
                    yield step.good
                self._seal_dead_letters(cursor.chunk)
            except ConduitError as exc:
                failed.append(exc)
                raise

        try:
            rows = self.dest.stage(self.load, cursor, pa.RecordBatchReader.from_batches(schema, batches()))
        except BaseException as exc:
            cause = failed[0] if failed else exc
            if isinstance(cause, QualityCheckFailed):
                self.dlq.flush_chunk(cursor.chunk)  # the rows dead-lettered before the failing batch
            else:
                self.dlq.discard(cursor.chunk)
            if cause is exc:
                raise
            raise cause from None
        self._staged(cursor, rows)

    def _staged(self, cursor: StagedChunk, rows: int) -> None:
        """Bookkeeping after the destination committed a chunk: checkpoint, counts, limits."""
        crash_points.point("staged")
        name, mark = decode_position(cursor.part)
        self.ctx.checkpointer.add(self.ctx.run_id, self.res.name, cursor.chunk, rows, name, cursor.rows_read_end, json.dumps(mark) if mark else None)
        self.result.rows_written += rows
        self.checks.enforce_limits(self.result)

    def _seal_dead_letters(self, chunk: int) -> None:
        """Persist a chunk's dead letters and new ``unique`` keys; must happen before the chunk commits."""
        self.dlq.save_keys(chunk, self.checks.chunk_keys())
        self.dlq.flush_chunk(chunk)

    def _account(self, step: Step, cursor: StagedChunk) -> None:
        """Count one step, queue its bad rows, advance the chunk's source position and mark."""
        crash_points.point("read")
        result = self.result
        self.checks.step_done()
        part = decode_position(cursor.part)[0]
        result.rows_read += step.rows_read
        result.rows_filtered += step.filtered
        cursor.rows_read_end = step.rows_read_end
        for name, n in step.warned.items():
            result.rows_warned += n
            result.checks[f"warn {name}"] = result.checks.get(f"warn {name}", 0) + n
        for bad in step.bad:
            self.dlq.add(bad.rows, part, bad.rows.get_column("_conduit_row_number"), bad.check, bad.error)
            result.rows_dlq += bad.rows.height
            for name, n in bad.counts().items():
                result.checks[name] = result.checks.get(name, 0) + n
        self.state.observe(step.good)
        cursor.part = encode_position(part, self.state.mark())
        self.ctx.reporter.advance(result.name, step.rows_read)


def _read_by_destination(part: Part, transform: Transform, dest: Destination, state: State, skip: int) -> bool:
    """Whether the destination reads ``part``'s file itself: a whole local file whose rows pass untransformed.

    Nothing may be staged from the part yet (the file is one chunk) and no incremental
    column may be tracked (its high-water mark is taken from the batches).
    """
    return part.local is not None and not skip and state.column is None and is_direct(part, transform) and dest.reads(part.local, transform.schema)
