"""One part job: read, coerce, check and stage the parts of a job, chunk by chunk.

:class:`JobRunner` is the :class:`~conduit.engines.base.PartRunner` of a load. The
driver (:class:`~conduit.chunk_stream.ChunkStream`) builds it once per load, hands it
the :class:`~conduit.connectors.base.Part` objects it lists (:meth:`JobRunner.offer`)
and the engine calls it with each :class:`~conduit.engines.base.PartJob`. A job of one
part stages it in chunks (on several connections through
:class:`~conduit.workers.ParallelStager` where the destination offers them); a job of
several small whole files stages them as a single chunk whose ledger row names every
file (:func:`conduit.chunking.encode_group`), so a thousand tiny files cost one
transaction, one ledger row and one checkpoint instead of a thousand.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from conduit import crash_points
from conduit.batches import frames, is_direct, prefetch, stream_part
from conduit.chunking import CHUNK_BATCHES, DLQ_CHUNK_ROWS, LATER_CHUNK_BATCHES, PARALLEL_CHUNK_BATCHES, chunks, encode_group, encode_position
from conduit.connectors.base import ROW_NUMBER, Part, Seekable, StagedChunk
from conduit.engines.base import ChunkDone, PartJob, PartOutcome
from conduit.errors import ConduitError, QualityCheckFailed, SourceError
from conduit.transform import Step
from conduit.workers import ParallelStager

_FILE = "_conduit_file"  # which file of a group a row came from

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

    from conduit.connectors.base import Destination, Load
    from conduit.dead_letters import DeadLetters
    from conduit.incremental import State
    from conduit.quality import Checks
    from conduit.transform import Transform


@dataclass
class Offered:
    """A part the driver listed, with its incremental row filter (computed in the driver)."""

    part: Part
    row_filter: Callable[[pl.DataFrame], pl.Series] | None
    released: threading.Event


@dataclass
class LoadPlan:
    """What every job of one load shares (built by the driver from the first part)."""

    dest: Destination
    load: Load
    transform: Transform
    state: State
    batch_size: int
    streams: int
    """Connections the destination stages one part on (:meth:`Destination.stage_streams`)."""
    checks: Callable[[], Checks]
    """The checks of a job: a fresh object per job, or the driver's own when ``unique`` forces serial jobs."""
    dead_letters: Callable[[], DeadLetters]
    advance: Callable[[int], None]
    """Progress: rows read (called from the job's thread)."""
    read_many: Callable[[list[str]], pl.DataFrame | None] | None = None
    """The source's one-call read of several small files (``CsvSource.read_many``), if it has one."""


class JobRunner:
    """Runs the jobs of one load (see the module docstring); safe to call from several threads."""

    def __init__(self, plan: LoadPlan):
        self.plan = plan
        self._offered: dict[str, Offered] = {}
        self._lock = threading.Lock()
        serial = plan.streams <= 1
        self._stage_lock: AbstractContextManager[object] = threading.Lock() if serial else nullcontext()
        """One writer: a load the destination stages on one connection (DuckDB, files, a PostgreSQL append straight into its table) stages one chunk at a time."""

    def offer(self, part: Part, row_filter: Callable[[pl.DataFrame], pl.Series] | None) -> threading.Event:
        """Keep a listed part until its job takes it; the event is set once that job ended."""
        released = threading.Event()
        with self._lock:
            self._offered[part.name] = Offered(part, row_filter, released)
        return released

    def _take(self, name: str) -> Offered:
        with self._lock:
            return self._offered[name]

    def __call__(self, job: PartJob) -> PartOutcome:
        """Stage the job's parts; return what the driver folds into the resource's result."""
        run = _Job(self, job)
        try:
            if len(job.parts) == 1 and job.chunk_limit - job.chunk_base > 1:
                run.single()
            else:
                run.group()
            return run.outcome
        except Exception as exc:
            exc.conduit_outcome = run.outcome  # type: ignore[attr-defined]  # what it did before failing (see engines.base)
            raise
        finally:
            with self._lock:
                for ref in job.parts:
                    offered = self._offered.pop(ref.name, None)
                    if offered is not None:
                        offered.released.set()


class _Job:
    """The accounting of one job: its own checks, dead letters and incremental mark."""

    def __init__(self, runner: JobRunner, job: PartJob):
        plan = runner.plan
        self.runner, self.plan, self.job = runner, plan, job
        self.outcome = PartOutcome(job)
        self.checks = plan.checks()
        self.dlq = plan.dead_letters()
        self.state = copy.copy(plan.state)  # observes this job's rows; the driver keeps the max
        self.state.null_rows = 0
        self.next_chunk = job.chunk_base

    def _transform(self, offered: Offered) -> Transform:
        return replace(self.plan.transform, checks=self.checks.evaluator(), row_filter=offered.row_filter)

    def _chunk(self, part: str, skip: int) -> StagedChunk:
        if self.next_chunk >= self.job.chunk_limit:
            msg = f"{self.job.resource}: part job ran out of chunk numbers ({self.job.chunk_base}..{self.job.chunk_limit})"
            raise ConduitError(msg)
        cursor = StagedChunk(self.next_chunk, part, skip, 0)
        self.next_chunk += 1
        return cursor

    def single(self) -> None:
        """One part, in chunks; on several connections when the destination offers them."""
        ref = self.job.parts[0]
        offered = self.runner._take(ref.name)
        part, plan, dest, load = offered.part, self.plan, self.plan.dest, self.plan.load
        transform = self._transform(offered)
        self.outcome.parts_read.append(part.name)
        if plan.streams <= 1 and read_by_destination(part, transform, dest, self.state, ref.skip):
            self._stage_file(part, self._chunk(part.name, 0))
            return
        steps = stream_part(part, ref.index, transform, plan.batch_size, ref.skip)
        stager: ParallelStager[StagedChunk] | None = None
        if plan.streams > 1:
            stager = ParallelStager(lambda cursor, reader: dest.stage(load, cursor, reader), transform.schema, plan.streams)
        if stager is None:  # a stager's queues already overlap reading with staging; a prefetch queue would hold more batches
            steps = prefetch(steps)
        first, later = (PARALLEL_CHUNK_BATCHES, PARALLEL_CHUNK_BATCHES) if stager else (CHUNK_BATCHES, LATER_CHUNK_BATCHES)
        try:
            for chunk_steps in chunks(steps, first, later, full=lambda: self.dlq.pending_rows >= DLQ_CHUNK_ROWS):
                cursor = self._chunk(part.name, ref.skip)
                if stager is None:
                    self._stage_one(chunk_steps, transform.schema, cursor, part.name)
                    continue
                feed = stager.start(cursor)
                for step in chunk_steps:
                    self._account(step, cursor, part.name)
                    stager.put(feed, step.good)
                self._seal(cursor.chunk)
                stager.seal(feed)
                for done, rows in stager.finished():
                    self._staged(done.cursor, rows)
            for done, rows in stager.finished(wait=True) if stager else []:
                self._staged(done.cursor, rows)
        finally:
            if stager is not None:
                stager.shutdown()

    def group(self) -> None:
        """Several small whole parts as one chunk: read them all, transform them together where they agree, stage once."""
        import polars as pl

        plan = self.plan
        cursor = self._chunk("", 0)
        offered = [(ref, self.runner._take(ref.name)) for ref in self.job.parts]
        names = [ref.name for ref, _ in offered]
        self.outcome.parts_read.extend(names)
        steps: list[Step] = []
        together = plan.transform.checks is None and not plan.transform.add_seq and all(o.row_filter is None for _, o in offered)
        at_once = plan.read_many(names) if together and plan.read_many is not None else None
        frames_read = [(ref, o, _read_whole(o.part, plan.batch_size)) for ref, o in offered] if together and at_once is None else []
        try:
            if at_once is not None:
                steps = self._together(at_once, names)
            elif together and len({tuple(df.schema.items()) for _, _, df in frames_read if df is not None}) <= 1:
                present = [(ref, df) for ref, _, df in frames_read if df is not None and df.height]
                df = pl.concat([d.with_columns(pl.lit(i, pl.UInt32).alias(_FILE)) for i, (_, d) in enumerate(present)], rechunk=True) if present else None
                steps = self._together(df, [ref.name for ref, _ in present]) if df is not None else []
            else:  # batch by batch, as a part alone: checks see rows in order, a fail check keeps the dead letters before it
                for ref, o in offered:
                    for step in stream_part(o.part, ref.index, self._transform(o), plan.batch_size, 0):
                        self._account(step, cursor, ref.name, grouped=True)
                        steps.append(step)
        except QualityCheckFailed:
            self.dlq.flush_chunk(cursor.chunk)
            raise
        cursor.part = encode_group(names, self.state.mark())
        cursor.rows_read_end = self.outcome.rows_read
        self._stage_one(iter(steps), plan.transform.schema, cursor, None)

    def _together(self, df: pl.DataFrame, names: list[str]) -> list[Step]:
        """The group's rows as one frame (``_conduit_file`` indexes ``names``), transformed in one call."""
        if not df.height:
            return []
        transform = replace(self.plan.transform, checks=self.checks.evaluator(), drop=[*self.plan.transform.drop, _FILE])
        good, bad, warned, filtered = transform(df, self.job.parts[0].index)
        step = Step(good, [], df.height, df.height, warned, filtered)
        cursor = StagedChunk(-1, "", 0, 0)
        self._account(step, cursor, "", grouped=True)
        for b in bad:
            files = b.rows.get_column(_FILE)
            for i in files.unique().to_list():
                keep = files == i
                rows = b.rows.filter(keep).drop(_FILE)
                self.dlq.add(rows, names[i], rows.get_column(ROW_NUMBER), b.check.filter(keep) if not isinstance(b.check, str) else b.check, b.error.filter(keep))
                self.outcome.rows_dlq += rows.height
            for name, n in b.counts().items():
                self.outcome.checks[name] = self.outcome.checks.get(name, 0) + n
        return [step]

    def _stage_file(self, part: Part, cursor: StagedChunk) -> None:
        """Stage a whole file as one chunk, read by the destination; progress from its fraction done."""
        assert part.local is not None
        crash_points.point("read")
        total, shown = part.frame.num_rows if isinstance(part.frame, Seekable) else None, 0

        def progress(fraction: float) -> None:
            nonlocal shown
            rows = int(fraction * total) - shown if total else 0
            if rows > 0:
                self.plan.advance(rows)
                shown += rows

        with self.runner._stage_lock:
            rows = self.plan.dest.stage_file(self.plan.load, cursor, part.local, progress)
        self.outcome.rows_read += rows
        self.plan.advance(max(rows - shown, 0))
        self._staged(cursor, rows)

    def _stage_one(self, steps: Iterator[Step], schema: pa.Schema, cursor: StagedChunk, part: str | None) -> None:
        """Stage one chunk on this thread; the reader's own error wins over the destination's wrapping.

        ``part`` None: the steps were accounted already (a group).
        """
        import pyarrow as pa

        failed: list[ConduitError] = []

        def batches() -> Iterator[pa.RecordBatch]:
            try:
                for step in steps:
                    if part is not None:
                        self._account(step, cursor, part)
                    if step.good is not None:
                        yield step.good
                self._seal(cursor.chunk)
            except ConduitError as exc:
                failed.append(exc)
                raise

        try:
            with self.runner._stage_lock:
                rows = self.plan.dest.stage(self.plan.load, cursor, pa.RecordBatchReader.from_batches(schema, batches()))
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
        crash_points.point("staged")
        self.outcome.chunks.append(ChunkDone(cursor.chunk, cursor.part, cursor.rows_read_end, rows))

    def _seal(self, chunk: int) -> None:
        """Persist a chunk's dead letters and new ``unique`` keys; must happen before the chunk commits."""
        self.dlq.save_keys(chunk, self.checks.chunk_keys())
        self.dlq.flush_chunk(chunk)

    def _account(self, step: Step, cursor: StagedChunk, part: str, grouped: bool = False) -> None:
        """Count one step, queue its bad rows, advance the chunk's source position and mark."""
        crash_points.point("read")
        out = self.outcome
        self.checks.step_done()
        out.rows_read += step.rows_read
        out.rows_filtered += step.filtered
        cursor.rows_read_end = step.rows_read_end
        for name, n in step.warned.items():
            out.rows_warned += n
            out.checks[f"warn {name}"] = out.checks.get(f"warn {name}", 0) + n
        for bad in step.bad:
            self.dlq.add(bad.rows, part, bad.rows.get_column("_conduit_row_number"), bad.check, bad.error)
            out.rows_dlq += bad.rows.height
            for name, n in bad.counts().items():
                out.checks[name] = out.checks.get(name, 0) + n
        self.state.observe(step.good)
        out.mark, out.null_rows = self.state.mark(), self.state.null_rows
        if not grouped:
            cursor.part = encode_position(part, self.state.mark())
        self.plan.advance(step.rows_read)


def _read_whole(part: Part, batch_size: int) -> pl.DataFrame | None:
    """A small part's rows as one frame, numbered (None when it has none); read errors name the part."""
    import polars as pl
    import pyarrow as pa

    try:
        got = [df for df in frames(part, batch_size, 0) if df.height]
    except ConduitError:
        raise
    except (pl.exceptions.PolarsError, OSError, pa.ArrowException) as exc:
        msg = f"cannot read {part.name}: {' '.join(str(exc).split())[:500]}"
        raise SourceError(msg) from None
    if not got:
        return None
    return got[0] if len(got) == 1 else pl.concat(got, how="diagonal_relaxed")


def read_by_destination(part: Part, transform: Transform, dest: Destination, state: State, skip: int) -> bool:
    """Whether the destination reads ``part``'s file itself: a whole local file whose rows pass untransformed.

    Nothing may be staged from the part yet (the file is one chunk) and no incremental
    column may be tracked (its high-water mark is taken from the batches).
    """
    return part.local is not None and not skip and state.column is None and is_direct(part, transform) and dest.reads(part.local, transform.schema)
