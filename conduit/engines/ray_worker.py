"""The worker side of the Ray engine: one part job in a Ray task, and its landing in the driver.

:func:`run_part_job` runs in a Ray worker. The job runner it gets (unpickled: the load's
plan only) rebuilds its source and destination from ingest.yml there; this module puts
one of two stand-ins between the job and the destination:

* :class:`LedgerAware` (a destination with ``Capabilities.remote_stage``): chunks are
  staged by the worker. On a retried attempt (the previous worker died) the chunks of
  the job that the destination's ledger already lists are read again but not staged
  again; their rows must match what the ledger says.
* :class:`ShipBack` (any other destination): the chunks' good batches are collected as
  Arrow tables and returned with the outcome; :func:`land` stages them in the driver,
  in order, before the driver checkpoints them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from conduit import _secrets
from conduit.connectors.base import StagedChunk
from conduit.errors import DestinationError, SourceError

if TYPE_CHECKING:
    import pyarrow as pa

    from conduit.connectors.base import Destination, Load, LocalFile
    from conduit.engines.base import PartJob, PartOutcome
    from conduit.engines.part_job import JobRunner
    from conduit.incremental import State
    from conduit.transform import Transform

Shipped = list[tuple[StagedChunk, "pa.Buffer"]]
"""Chunks a worker read for the driver to stage: where each ended, its good rows as an Arrow IPC stream."""
_RACES = ("23505", "42P07", "42P06")  # two workers creating the same staging table or schema at once


@dataclass
class RemotePlan:
    """What a Ray task needs to rebuild one load's job runner: no connector options, so no secret.

    ``config_text`` is ingest.yml as written (``${VAR}`` unexpanded), or None when it holds
    a secret inline; the worker then reads ``config_path`` itself. ``target`` is the
    driver's target, under which the worker builds its connectors.
    """

    config_path: str
    target: str | None
    config_text: str | None
    load: Load
    transform: Transform
    state: State
    batch_size: int
    dlq_dir: str
    ship: bool

    @classmethod
    def of(cls, runner: JobRunner, config_path: Path, target: str | None = None) -> RemotePlan:
        """The plan of the driver's ``runner``, without its callables and connections."""
        plan = runner.plan
        text = config_path.read_text(encoding="utf-8")
        inline_secret = _secrets.redact(text) != text
        transform = replace(plan.transform, checks=None, row_filter=None)
        dlq_dir = plan.dead_letters().dir.parent
        ship = not plan.dest.capabilities.remote_stage
        return cls(str(config_path), target, None if inline_secret else text, plan.load, transform, plan.state, plan.batch_size, str(dlq_dir), ship)


class _Proxy:
    """A destination as a part job sees it; what is not overridden goes to the real one."""

    def __init__(self, dest: Destination, job: PartJob):
        self._dest, self._job = dest, job

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dest, name)

    def reads(self, file: LocalFile, schema: pa.Schema) -> bool:
        """Never: a worker's files go through batches (the destination may be another process's)."""
        return False


class LedgerAware(_Proxy):
    """Stages each chunk on the worker; a chunk the ledger already lists (an earlier attempt's) is read, not staged again."""

    _committed: dict[int, StagedChunk] | None = None

    def stage_streams(self, load: Load) -> int:
        """The destination's streams, for a load whose chunks each commit on their own."""
        load.detached = True
        return int(self._dest.stage_streams(load))

    def committed(self, load: Load) -> dict[int, StagedChunk]:
        """This job's chunks that the ledger lists (asked once per attempt)."""
        if self._committed is None:
            job = self._job
            self._committed = {c.chunk: c for c in self._dest.staged(load) if job.chunk_base <= c.chunk < job.chunk_limit}
        return self._committed

    def stage(self, load: Load, chunk: StagedChunk, batches: pa.RecordBatchReader) -> int:
        """Stage ``chunk``, or, when an earlier attempt committed it, read it through and check it is the same."""
        load.detached = True
        done = self.committed(load).get(chunk.chunk)
        if done is None:
            import pyarrow as pa

            pulled: list[bool] = []

            def watched() -> Iterator[pa.RecordBatch]:
                for batch in batches:
                    pulled.append(True)
                    yield batch

            try:
                return int(self._dest.stage(load, chunk, pa.RecordBatchReader.from_batches(batches.schema, watched())))
            except DestinationError as exc:
                if exc.sqlstate not in _RACES or pulled:
                    raise
                return int(self._dest.stage(load, chunk, pa.RecordBatchReader.from_batches(batches.schema, watched())))  # another worker created the staging table meanwhile
        rows = sum(batch.num_rows for batch in batches)  # the job accounts the rows and writes the chunk's dead letters again
        if rows != done.rows or chunk.rows_read_end != done.rows_read_end:
            msg = f"{load.resource}: chunk {chunk.chunk} read again after a lost worker has {rows} rows up to row {chunk.rows_read_end}; the ledger says {done.rows} up to {done.rows_read_end} (did the source change?)"
            raise DestinationError(msg)
        return rows


class ShipBack(_Proxy):
    """Collects each chunk's good batches as an Arrow table for the driver to stage."""

    def __init__(self, dest: Destination, job: PartJob):
        super().__init__(dest, job)
        self.shipped: Shipped = []

    def stage_streams(self, load: Load) -> int:
        """One: chunks are collected in order."""
        return 1

    def staged(self, load: Load) -> list[StagedChunk]:
        """Nothing: the driver stages, and knows what it staged."""
        return []

    def stage(self, load: Load, chunk: StagedChunk, batches: pa.RecordBatchReader) -> int:
        """Keep the chunk's batches (and where it ended in the source) for :func:`land`."""
        import pyarrow as pa

        sink = pa.BufferOutputStream()
        rows = 0
        with pa.ipc.new_stream(sink, batches.schema) as writer:  # Arrow IPC: every type (views too), zero-copy in Ray's object store
            for batch in batches:
                writer.write_batch(batch)
                rows += batch.num_rows
        self.shipped.append((StagedChunk(chunk.chunk, chunk.part, chunk.rows_read_end, rows), sink.getvalue()))
        return rows


Letters = dict[str, bytes]
"""A job's dead-letter part files (name -> Parquet bytes), written by the worker, copied by the driver where missing."""
Result = tuple["PartOutcome", Shipped, Letters]


def run_part_job(plan: RemotePlan, job: PartJob) -> Result:
    """The Ray task: rebuild the load's connectors from ingest.yml and this process's environment, run ``job``.

    Returns the outcome and, when the destination is staged by the driver (``plan.ship``),
    the chunks to stage there.
    """
    from conduit import part_ranges
    from conduit.connectors.base import Task
    from conduit.dead_letters import DeadLetters
    from conduit.engines.part_job import JobRunner, LoadPlan
    from conduit.project import project_from_text
    from conduit.quality import Checks

    path = Path(plan.config_path)
    text = plan.config_text if plan.config_text is not None else path.read_text(encoding="utf-8")
    project = project_from_text(path, text, os.environ, plan.target)
    res = next(r for r in project.config.resources if r.name == plan.load.resource)
    source, dest = project.new_source(res.source), project.new_destination(res.destination)
    proxy: ShipBack | LedgerAware = ShipBack(dest, job) if plan.ship else LedgerAware(dest, job)
    load, state = plan.load, plan.state
    try:
        runner = JobRunner(
            LoadPlan(
                dest=cast("Destination", proxy),
                load=load,
                transform=plan.transform,
                state=state,
                batch_size=plan.batch_size,
                streams=proxy.stage_streams(load),
                checks=lambda: Checks(res, project),
                dead_letters=lambda: DeadLetters(Path(plan.dlq_dir), load.run_id, res.name),
                advance=lambda _rows: None,
                read_many=getattr(source, "read_many", None),
            )
        )
        wanted = {ref.name for ref in job.parts}
        for listed in source.parts(Task(res, project.dir, state.filter)):
            for part in part_ranges.find(listed, wanted):  # the file, or row-group ranges of it
                runner.offer(part, state.row_filter(part.file or part.name))
                wanted.discard(part.name)
            if not wanted:
                break
        if wanted:
            msg = f"{res.name}: the Ray worker does not find {', '.join(sorted(wanted))} (is the source at the same path on every node?)"
            raise SourceError(msg)
        if isinstance(proxy, LedgerAware):
            proxy.committed(load)  # before the job's staging threads start: one question, on one thread
        outcome = runner(job)
    finally:
        dest.close()
    letters = DeadLetters(Path(plan.dlq_dir), load.run_id, res.name)
    files = [letters._part(c.chunk) for c in outcome.chunks]
    return outcome, proxy.shipped if isinstance(proxy, ShipBack) else [], {f.name: f.read_bytes() for f in files if f.exists()}


def read_in_driver(runner: JobRunner, job: PartJob) -> bool:
    """Whether ``job`` reads a stream (a query's cursor) that only the driver holds: it runs there."""
    import polars as pl

    from conduit.connectors.base import Seekable

    with runner._lock:
        offered = [runner._offered.get(ref.name) for ref in job.parts]
    return any(o is not None and not isinstance(o.part.frame, pl.LazyFrame | Seekable) for o in offered)


def release(runner: JobRunner, job: PartJob) -> None:
    """Drop the driver's copies of the parts a worker read (as the runner does after a job it ran)."""
    with runner._lock:
        for ref in job.parts:
            offered = runner._offered.pop(ref.name, None)
            if offered is not None:
                offered.released.set()


def land(runner: JobRunner, result: Result) -> PartOutcome:
    """In the driver: the dead letters a worker wrote elsewhere, the chunks it shipped back (staged in order), its rows' progress.

    Dead-letter files come first, as a chunk's dead letters are on disk before it commits.
    On a shared filesystem (or one machine) they are there already and left as they are.
    """
    import pyarrow as pa

    outcome, shipped, letters = result
    plan = runner.plan
    folder = plan.dead_letters()._part(0).parent
    for name, data in letters.items():
        path = folder / name
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
    for cursor, data in shipped:
        plan.dest.stage(plan.load, cursor, pa.ipc.open_stream(data))
    plan.advance(outcome.rows_read)
    return outcome
