"""The driver of one load: its parts cut into jobs, the jobs run by the engine, then one publish.

:class:`ChunkStream` lists the source's parts, builds the load's transform from the
first one, cuts the parts into :class:`~conduit.engines.base.PartJob` s (a part each,
or a group of small whole files) and has the run's engine run them
(:mod:`conduit.engines`; each job reads, coerces, checks and stages its chunks in
:mod:`conduit.engines.part_job`). It folds every job's outcome into the resource's
result, checkpoints the chunks it lists in the store and finally publishes once.
:class:`~conduit.resource_load.ResourceLoad` decides where it starts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import polars as pl

from conduit import crash_points, part_ranges
from conduit.chunking import GROUP_BYTES, GROUP_PART_BYTES, GROUP_PARTS, PART_CHUNKS, batch_rows, decode_position
from conduit.connectors.base import Destination, Load, Part, Seekable, Source, Task
from conduit.dead_letters import DeadLetters
from conduit.engines.base import CHUNK_NUMBER_LIMIT, PartJob, PartOutcome, PartRef
from conduit.engines.part_job import JobRunner, LoadPlan, read_by_destination
from conduit.errors import SourceError
from conduit.incremental import State
from conduit.quality import Checks
from conduit.results import ResourceResult
from conduit.transform import make_transform

if TYPE_CHECKING:
    from conduit.config import ResourceConfig
    from conduit.engines.base import Engine
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
    @property
    def engine(self) -> Engine: ...
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
    """Where the load starts: rows already staged per part, parts staged whole, the first free chunk number, checks and dead letters so far."""

    checks: Checks
    dlq: DeadLetters
    positions: dict[str, int]
    chunk_no: int
    done: set[str] = field(default_factory=set)


class ChunkStream:
    """The driver of one load: parts -> jobs -> the engine -> outcomes folded in -> the publish."""

    def __init__(self, ctx: RunContext, res: ResourceConfig, result: ResourceResult, target: Target, resume: Resume):
        self.ctx, self.res, self.result = ctx, res, result
        self.source, self.dest, self.task, self.load, self.state = target.source, target.dest, target.task, target.load, target.state
        self.checks, self.dlq, self.positions, self.chunk_no, self.done = resume.checks, resume.dlq, resume.positions, resume.chunk_no, resume.done
        self.names: list[str] = []
        self.header_only = True  # every part is a CSV file with bytes (a header) but, so far, no rows

    def parallelism(self) -> int:
        """Jobs of this load at once: the resource's ``parallelism``, else the run's workers; 1 with a ``unique`` check."""
        if any(c.check == "unique" for c in self.res.quality_checks):
            return 1  # the seen keys live in the driver's memory
        return getattr(self.res, "parallelism", None) or self.ctx.engine.workers

    def run(self) -> bool:
        """Run the jobs, then publish; False when the source had no parts."""
        ctx, res, result, dest, load, state = self.ctx, self.res, self.result, self.dest, self.load, self.state
        parts = self.source.parts(self.task)
        first = next(parts, None)
        if first is None:
            return False
        transform = make_transform(res, self.source, dest, first, load, self.checks.evaluator(), ctx.reporter.message)
        parallelism = self.parallelism()
        streams = max(1, dest.stage_streams(load))
        shared = parallelism == 1

        def checks() -> Checks:
            return self.checks if shared else Checks(res, ctx.project)

        def dead_letters() -> DeadLetters:
            return DeadLetters(ctx.store.dlq_dir, ctx.run_id, res.name)

        plan = LoadPlan(
            dest,
            load,
            transform,
            state,
            batch_rows(ctx.batch_size, load, max(1, dest.capabilities.parallel_stage)),  # split as for every stream, even where this load uses fewer
            streams,
            checks,
            dead_letters,
            lambda rows: ctx.reporter.advance(res.name, rows),
            getattr(self.source, "read_many", None),
        )
        runner = JobRunner(plan)
        outcomes = ctx.engine.map_parts(runner, self._jobs(runner, first, parts), parallelism)
        try:
            for outcome in outcomes:
                self._fold(outcome)
        except Exception as exc:
            partial = getattr(exc, "conduit_outcome", None)
            if isinstance(partial, PartOutcome):
                self._fold(partial, limits=False)  # counts of the failed job, its committed chunks checkpointed
            raise
        finally:
            close = getattr(outcomes, "close", None)
            if close is not None:
                close()
        if result.rows_read == 0 and self.header_only and state.before is None:
            msg = f"{res.name}: no data rows in {', '.join(self.names)} (header only)"
            raise SourceError(msg)
        load.schema = transform.schema
        return self._publish()

    def _jobs(self, runner: JobRunner, first: Part, rest: Iterator[Part]) -> Iterator[PartJob]:
        """Cut the parts into jobs: small whole files grouped, any other part alone; chunk numbers never reused."""
        group: list[PartRef] = []
        group_bytes = 0

        def cut(refs: list[PartRef], chunks: int) -> PartJob:
            base = self.chunk_no
            if base + chunks > CHUNK_NUMBER_LIMIT:
                msg = f"{self.res.name}: too many parts for one load ({index + 1:,}); split the resource"
                raise SourceError(msg)
            self.chunk_no += chunks
            return PartJob(self.res.name, self.load.load_id, tuple(refs), base, base + chunks)

        index = -1
        for whole in _chain(first, rest):
            self.result.bytes_read += whole.bytes
            self.names.append(whole.name)
            self.header_only = self.header_only and whole.text_columns and whole.bytes > 0
            for part in self._pieces(runner, whole):
                index += 1
                if part.name in self.done:
                    continue
                skip = self.positions.get(part.name, 0)
                released = runner.offer(part, self.state.row_filter(part.file or part.name))  # per-file state under the file's name
                if not skip and 0 < part.bytes <= GROUP_PART_BYTES:
                    group.append(PartRef(index, part.name))
                    group_bytes += part.bytes
                    if len(group) >= GROUP_PARTS or group_bytes >= GROUP_BYTES:
                        yield cut(group, 1)
                        group, group_bytes = [], 0
                    continue
                yield cut([PartRef(index, part.name, skip)], PART_CHUNKS)
                if not isinstance(part.frame, pl.LazyFrame | Seekable):
                    released.wait()  # a stream (a query's cursor) may end when the source lists its next part
        if group:
            yield cut(group, 1)

    def _pieces(self, runner: JobRunner, part: Part) -> list[Part]:
        """``part`` itself, or its row-group ranges (:mod:`conduit.part_ranges`) unless the destination reads the whole file itself."""
        plan = runner.plan
        if part.name in self.positions or (plan.streams <= 1 and read_by_destination(part, plan.transform, plan.dest, self.state, 0)):
            return [part]  # read whole, or resumed as it was cut before
        pieces = part_ranges.split(part)
        if self.parallelism() <= 1 and not any(p.name in self.positions or p.name in self.done for p in pieces):
            return [part]  # one part at a time: whole, in fewer and larger chunks (unless a crashed run cut it)
        return pieces

    def _fold(self, outcome: PartOutcome, limits: bool = True) -> None:
        """One job's outcome into the result, its chunks into the checkpoints; limits checked."""
        ctx, res, result, state = self.ctx, self.res, self.result, self.state
        result.rows_read += outcome.rows_read
        result.rows_filtered += outcome.rows_filtered
        result.rows_warned += outcome.rows_warned
        result.rows_dlq += outcome.rows_dlq
        for name, n in outcome.checks.items():
            result.checks[name] = result.checks.get(name, 0) + n
        state.restore(outcome.mark)
        state.null_rows += outcome.null_rows
        for chunk in outcome.chunks:
            name, mark = decode_position(chunk.part)
            ctx.checkpointer.add(ctx.run_id, res.name, chunk.chunk, chunk.rows, chunk.part if chunk.part.startswith('{"parts"') else name, chunk.rows_read_end, json.dumps(mark) if mark else None)
            result.rows_written += chunk.rows
        if limits:
            self.checks.enforce_limits(result)

    def _publish(self) -> bool:
        load, result, state = self.load, self.result, self.state
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


def _chain(first: Part, rest: Iterator[Part]) -> Iterator[Part]:
    yield first
    yield from rest
