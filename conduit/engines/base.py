"""The execution seam: where a run dispatches its resources and where one part job runs.

Two levels of concurrency meet here, and an :class:`Engine` provides both:

1. **Resources.** :meth:`Engine.map_resources` runs the selected resources of a run
   (``--workers N``, default the machine's cores) and returns their results in the
   order given (config order), whatever order they finish in.
2. **Parts.** The load of one resource is cut into :class:`PartJob` s (one part --
   a file, a Parquet row-group range, a query range -- or a group of several small
   files). :meth:`Engine.map_parts` runs them (at most the resource's ``parallelism``
   at once) and yields a :class:`PartOutcome` per job as each finishes.

Who owns what (the contract every engine keeps)
-----------------------------------------------
* The **driver** -- the process that runs ``conduit run`` -- always owns the local
  store (runs, checkpoints, incremental state, schema history), the lease, progress,
  the dead-letter gather and the one atomic publish of each load. It cuts the jobs,
  folds each :class:`PartOutcome` into the resource's result (counts, checks,
  incremental mark = the max over parts) and writes the checkpoints of the chunks the
  outcome lists. It never stages rows itself.
* A **part job** runs wherever the engine puts it (a thread of the driver for
  :class:`~conduit.engines.local.LocalEngine`, a Ray task for the Ray engine). It
  reads its parts, coerces and checks the batches, and stages them chunk by chunk in
  the destination. Each chunk commits in the destination together with its ledger
  row (``_conduit_chunks``: chunk, part, rows_read_end, rows), so the destination's
  ledger is the truth for resume, exactly as for a serial load. A chunk's dead
  letters (and new ``unique`` keys) are written under the store's ``dlq`` folder
  *before* the chunk commits, named by its chunk number; a chunk that does not commit
  leaves none behind. A job touches neither the store nor the checkpoints.
* **Chunk numbers** are unique within a load but no longer contiguous: job ``j``
  numbers its chunks ``chunk_base, chunk_base + 1, ... < chunk_limit``. Bases are
  chosen by the driver so that they never collide with chunks committed by an
  earlier attempt. A crash may commit chunk 5 and not chunk 4: resume reads the
  destination's ledger per part (the furthest ``rows_read_end`` of each part name,
  and the set of committed chunk numbers for dead letters and keys), never "the
  first N chunks".
* **Ordering.** Chunks of different jobs commit in any order. Within a job, chunks
  commit in order (so a part's resume position is the end of its last committed
  chunk). ``merge`` stays deterministic: rows carry ``part index << 40 | row number``.
* **unique checks** keep their seen keys in the driver's memory: a resource with a
  ``unique`` check runs its jobs one at a time (``parallelism`` 1), on the driver.
* **Errors.** A job raises (a :class:`~conduit.errors.ConduitError` for bad input,
  ``QualityCheckFailed`` for a ``fail`` check). The exception carries what the job did
  before failing as an attribute ``conduit_outcome`` (a :class:`PartOutcome`: counts,
  committed chunks), which the driver folds in when present (an engine that cannot
  carry it back may drop it: the destination's ledger stays the truth for resume). :meth:`Engine.map_parts` re-raises
  the first error in the driver and stops handing out jobs; chunks already committed
  stay in the destination's staging (the load is then aborted or resumed by the
  driver, as today).

Picklability (for engines that run jobs in other processes)
-----------------------------------------------------------
:class:`PartJob` and :class:`PartOutcome` are plain picklable data. The runner
handed to :meth:`Engine.map_parts` (:class:`PartRunner`, implemented by
:class:`conduit.engines.part_job.JobRunner`) is, for now, an in-process object: it holds
the live source parts the driver listed (:meth:`JobRunner.offer`), the destination
connection and the load's transform. An engine that runs jobs in another process builds
its own runner there from what the driver knows (project path, resource name, run id,
``JobRunner.plan``: load, target schema, batch size), lists the source's parts by name
and stages through its own destination connection; the contract for what the job does
(chunks numbered from ``chunk_base``, each committed with its ledger row, dead letters
written before the commit, an outcome returned) is the same. Progress callbacks do not
travel: a remote job reports its rows in its outcome.

Stability
---------
This contract was committed first so the Ray engine can plug into it; changes are
noted here: (1) a failed job's exception carries ``conduit_outcome`` (optional for
engines to propagate); (2) ``JobRunner`` is not picklable yet (see above; the first
version of this docstring promised it).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, TypeVar

R = TypeVar("R")
T = TypeVar("T")

CHUNK_NUMBER_LIMIT = 2**31 - 1
"""Chunk numbers fit a 32-bit INTEGER (the ledgers' ``chunk`` column)."""


def default_workers() -> int:
    """The default ``--workers``: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class PartRef:
    """One part of a load as a job sees it: its place in the source's listing, name and resume position.

    ``index`` is the part's position in :meth:`Source.parts` (stable across resumes
    of an unchanged source; it orders ``merge`` rows). ``skip`` is how many of its
    rows (by row number) earlier chunks already staged.
    """

    index: int
    name: str
    skip: int = 0


@dataclass(frozen=True)
class PartJob:
    """A unit of work handed to an engine: one part, or a group of small whole parts, of one load.

    The job numbers its chunks from ``chunk_base`` up to (not including) ``chunk_limit``.
    """

    resource: str
    load_id: str
    parts: tuple[PartRef, ...]
    chunk_base: int
    chunk_limit: int


@dataclass(frozen=True)
class ChunkDone:
    """A chunk the destination committed (with its ledger row): what the driver checkpoints.

    ``part`` is the ledger's part field as staged (the part name, or an encoded
    position naming the part(s) and incremental mark: :mod:`conduit.chunking`).
    """

    chunk: int
    part: str
    rows_read_end: int
    rows: int


@dataclass
class PartOutcome:
    """What one part job reports back to the driver once all its chunks committed.

    Attributes
    ----------
    job
        The job it answers.
    chunks
        The committed chunks, in commit order (the driver checkpoints them).
    rows_read, rows_filtered, rows_warned, rows_dlq, bytes_read
        Counts over the job's parts (rows written are the sum of ``chunks[].rows``).
    checks
        Rows per check name (``warn <name>``, ``cast <column>``, ...), added to the resource's.
    mark
        The incremental high-water mark observed (``[text, type]``), None if none;
        the driver keeps the max over all outcomes.
    null_rows
        Rows whose incremental column was NULL.
    parts_read
        Names of the parts the job read (files seen by an incremental resource).
    """

    job: PartJob
    chunks: list[ChunkDone] = field(default_factory=list)
    rows_read: int = 0
    rows_filtered: int = 0
    rows_warned: int = 0
    rows_dlq: int = 0
    bytes_read: int = 0
    checks: dict[str, int] = field(default_factory=dict)
    mark: list[str | None] | None = None
    null_rows: int = 0
    parts_read: list[str] = field(default_factory=list)

    @property
    def rows_written(self) -> int:
        """Rows the destination committed for this job."""
        return sum(c.rows for c in self.chunks)


class PartRunner(Protocol):
    """Reads, coerces, checks and stages one job; picklable (see the module docstring)."""

    def __call__(self, job: PartJob) -> PartOutcome: ...


class Engine(ABC):
    """Runs a run's resources and a load's part jobs; see the module docstring for the contract.

    Parameters
    ----------
    workers
        How many resources (and, summed over them, part jobs) may run at once.
    """

    name: ClassVar[str] = ""

    def __init__(self, workers: int | None = None):
        self.workers = max(1, workers or default_workers())

    @abstractmethod
    def map_resources(self, fn: Callable[[R], T], items: Sequence[R], parallelism: Callable[[R], int] | None = None) -> list[T]:
        """``[fn(item) for item in items]``, up to :attr:`workers` at once; results in ``items``' order.

        ``fn`` records failures itself (a failed resource is a result); an exception
        (``KeyboardInterrupt``, a bug) stops handing out items and re-raises once the
        running ones ended. ``parallelism(item)``, when given, is how many part jobs
        the item may run at once (it occupies that many workers at most).
        """

    @abstractmethod
    def map_parts(self, runner: PartRunner, jobs: Iterable[PartJob], parallelism: int) -> Iterator[PartOutcome]:
        """Run ``runner(job)`` for every job, at most ``parallelism`` at once; outcomes as they finish.

        ``jobs`` is consumed lazily (the driver may cut jobs while earlier ones run).
        The first job error re-raises here after the jobs still running ended; no
        job is started after it. Closing the iterator early (the driver failed)
        waits for the running jobs and starts no more.
        """

    def close(self) -> None:  # noqa: B027 - most engines hold nothing to release
        """Release the engine's workers (threads, a Ray connection)."""
