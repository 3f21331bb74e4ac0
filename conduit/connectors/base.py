"""The connector contract: small ABCs plus capabilities as data.

A source yields :class:`Part` objects (a file, a query result), each a Polars
LazyFrame, an Arrow RecordBatchReader or a :class:`Seekable` Arrow stream. A destination stages Arrow batches chunk by
chunk (each chunk committed with a ledger row, so a resume never stages twice) and
publishes a whole load atomically, recording its id in ``_conduit_loads``.
The engine asks :class:`Capabilities`; it never checks a connector's type name.
"""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from pydantic import BaseModel

from conduit.config import ResolvedTable, ResourceConfig, Strict

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

    from conduit.schema import Change

ROW_NUMBER = "_conduit_row_number"
SEQ = "_conduit_seq"
ERROR = "_conduit_error"  # a source sets it (non-null) on rows it could not parse...
RAW = "_conduit_raw"  # ...and keeps the raw text here; the engine dead-letters those rows
RECHECK = "_conduit_recheck"  # true on a row the fast reader may have misread: re-read from it via Part.fallback


@dataclass(frozen=True)
class Capabilities:
    """What a connector can do, as data the engine reads.

    Attributes
    ----------
    write_modes
        The write modes a destination publishes atomically.
    parallel_stage
        How many chunks the destination may stage at once (what
        :meth:`Destination.stage_streams` answers unless a load needs fewer). Above 1,
        the engine calls ``stage`` from that many threads at once (the destination uses
        a connection per thread) and ends each chunk's reader only after the previous
        chunk was staged, so chunks commit in order.
    schema_evolution
        Whether the destination can add and widen columns (``schema_evolution: auto``).
    incremental_pushdown
        Whether a source pushes an incremental predicate into its own query.
    arrow_views
        Whether ``stage`` takes Arrow's view types (``string_view``, ``binary_view``):
        Polars hands them over without copying every string; other destinations get
        ``large_string`` / ``large_binary``.
    max_identifier_bytes
        The longest table, schema or column name the destination keeps as written
        (PostgreSQL truncates past 63 bytes); None when there is no such limit.
    max_decimal_precision
        The most digits a decimal column holds (DuckDB 38, PostgreSQL 1000). Widening a
        decimal column (``schema_evolution: auto``) past it is a schema error, never a
        lossy cast.
    text_nul
        Whether a text column can hold the NUL character. When it cannot (PostgreSQL),
        the engine dead-letters rows with a NUL in any text column before staging.
    remote_stage
        Whether a part job in another process or machine (a Ray worker) may stage into
        the destination itself: each chunk commits with its ledger row on the job's own
        connection (PostgreSQL). When not (a DuckDB file, which one process holds), the
        Ray engine ships the job's good batches back to the driver, which stages them.
    """

    write_modes: frozenset[str] = frozenset({"append", "replace", "merge"})
    parallel_stage: int = 1
    schema_evolution: bool = True
    incremental_pushdown: bool = False
    arrow_views: bool = False
    max_identifier_bytes: int | None = None
    max_decimal_precision: int = 38
    text_nul: bool = True
    remote_stage: bool = False


@dataclass
class Incremental:
    """The incremental filter for one read: rows with ``column > value`` (typed), ``>=`` when ``inclusive``."""

    column: str
    value: Any = None
    inclusive: bool = False

    @property
    def operator(self) -> str:
        """``>=`` or ``>``, for SQL."""
        return ">=" if self.inclusive else ">"


@dataclass
class Task:
    """What one resource asks a source to read."""

    resource: ResourceConfig
    project_dir: Path
    incremental: Incremental | None = None


class Seekable(ABC):
    """An Arrow stream that can start near a row and cut batches to size (Parquet row groups).

    The engine asks for the batches after the rows already staged, so a resume does
    not decode what it would throw away.
    """

    schema: pa.Schema
    num_rows: int | None = None  # the stream's rows, when known up front (Parquet metadata)

    @abstractmethod
    def batches(self, skip: int, batch_size: int, want: pa.Schema | None = None) -> tuple[int, Iterator[pa.RecordBatch]]:
        """(rows before the first batch, at most ``skip``; batches of at most ``batch_size`` rows).

        ``want``, when given, is the schema the batches are cast to next: a stream that
        can produce its string layout directly (rather than views) may do so.
        """


class PlannedPart(NamedTuple):
    """A part a run would read, as ``conduit plan`` shows it: a file's URL and size, or a query."""

    name: str
    bytes: int | None = None


class LocalFile(NamedTuple):
    """A part that is one whole file on this machine: what a destination needs to read it itself."""

    format: str  # the source type: parquet, csv, ...
    path: str


@dataclass
class Part:
    """One unit of a source (a file, a query): its frame and, for files, its name.

    ``frame`` carries a ``_conduit_row_number`` column (1-based within the part) when
    the source can number rows; the engine uses it for dead letters and resume. Rows
    the source could not parse carry a non-null ``_conduit_error`` (and ``_conduit_raw``).
    ``read(after, batch_size, types)``, when set, gives the batches of the rows numbered above
    ``after`` in place of collecting ``frame`` (which then serves the schema and the
    type-inference sample); ``types`` (or None) are the types the columns will be cast
    to: a reader may parse a column as its type itself where its parse is exactly the
    cast's, and then gives numbered Arrow tables (the CSV reader's blocks, typed where it
    can, text otherwise: ``{}`` asks for text read so) holding
    no NUL character (rows with one come in a Polars frame, for the transform to
    dead-letter where the destination cannot store it). ``fallback(after, batch_size)``, when set, is how to go on
    reading after a read error: the same batches, malformed rows marked rather than raised.
    ``local``, for a whole local file, lets a destination that reads its format itself
    (:meth:`Destination.reads`) stage it without the batches passing through Python.
    ``file``, for a part that is a piece of a file (a Parquet row-group range), names
    that file for per-file bookkeeping (files seen by incremental loads); else None.
    """

    name: str
    frame: pl.LazyFrame | pa.RecordBatchReader | Seekable
    text_columns: bool = False
    bytes: int = 0
    read: Callable[[int, int, Mapping[str, pl.DataType] | None], Iterator[pl.DataFrame | pa.Table]] | None = None
    fallback: Callable[[int, int], Iterator[pl.DataFrame]] | None = None
    local: LocalFile | None = None
    file: str | None = None


@dataclass
class Load:
    """One resource's load into one destination table for one run."""

    load_id: str
    run_id: str
    resource: str
    table: str
    options: ResolvedTable
    schema: pa.Schema | None = None
    json_columns: list[str] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    """Schema changes (``schema_evolution: auto``) that ``publish`` applies in its transaction."""
    detached: bool = False
    """Chunks are staged by other processes than the publishing one (Ray workers): each must commit on its own, with its ledger row."""

    @property
    def write_mode(self) -> str:
        """``append``, ``replace`` or ``merge``."""
        return self.options.write_mode

    @property
    def primary_keys(self) -> list[str]:
        """Merge keys (and the primary key of a created table)."""
        return self.options.primary_keys


@dataclass
class StagedChunk:
    """A chunk the destination has durably staged: where in the source it ended."""

    chunk: int
    part: str
    rows_read_end: int
    rows: int


class Source(ABC):
    """Reads one kind of source. Subclasses set ``Options`` and ``capabilities``."""

    Options: ClassVar[type[BaseModel]] = Strict
    capabilities: ClassVar[Capabilities] = Capabilities()

    def __init__(self, name: str, options: Any, project_dir: Path):
        self.name = name
        self.options = options
        self.project_dir = project_dir

    @abstractmethod
    def parts(self, task: Task) -> Iterator[Part]:
        """The parts to read for ``task``, in a stable order (resume depends on it)."""

    def estimate_rows(self, task: Task) -> int | None:
        """A row estimate for progress, or None."""
        return None

    def plan_parts(self, task: Task) -> list[PlannedPart] | None:
        """The parts a run of ``task`` would read, found without reading them (``conduit plan``); None when unknown."""
        return None

    def check(self) -> None:  # noqa: B027 - optional hook
        """Really reach the source; raise a :class:`~conduit.errors.ConduitError` if it can't."""

    def describe(self) -> str:
        """A one-line, secret-free description for logs."""
        return self.name


class Destination(ABC):
    """Writes to one kind of destination. Subclasses set ``Options`` and ``capabilities``."""

    Options: ClassVar[type[BaseModel]] = Strict
    capabilities: ClassVar[Capabilities] = Capabilities()

    def __init__(self, name: str, options: Any, project_dir: Path):
        self.name = name
        self.options = options
        self.project_dir = project_dir

    def check(self) -> None:  # noqa: B027 - optional hook
        """Really connect; raise a :class:`~conduit.errors.ConduitError` if it can't."""

    def default_table(self, resource: str) -> str:
        """The table name used when a resource sets none."""
        return resource

    @abstractmethod
    def table_schema(self, table: str) -> pa.Schema | None:
        """The Arrow schema of an existing table, or None if it does not exist."""

    def sql_type(self, arrow_type: pa.DataType, json: bool = False) -> str:
        """The destination's own name for the column type an Arrow type loads as (``conduit schema infer``).

        ``json``: a column declared ``json``. Destinations without SQL types keep Arrow's name.
        """
        return str(arrow_type)

    def ddl_for(self, table: str, change: Change) -> str | None:
        """The statement that would apply ``change`` (shown in schema errors)."""
        return None

    def plan_ddl(self, load: Load) -> list[str] | None:
        """The DDL publishing ``load`` would run on its table (``[]``: none), for ``conduit plan``; None when unknown.

        ``load.schema`` and ``load.changes`` are set as a run would set them.
        """
        return None

    @abstractmethod
    def staged(self, load: Load) -> list[StagedChunk]:
        """Chunks already staged for ``load`` (non-empty only when resuming).

        Raises :class:`~conduit.errors.StagingLost` when the ledger lists chunks whose rows
        are no longer there; the engine then aborts and stages from the start.
        """

    def stage_streams(self, load: Load) -> int:
        """How many chunks of ``load`` may stage at once (asked once its schema is known)."""
        return self.capabilities.parallel_stage

    @abstractmethod
    def stage(self, load: Load, chunk: StagedChunk, batches: pa.RecordBatchReader) -> int:
        """Stage one chunk atomically (data + ledger row); return the rows staged."""

    def reads(self, file: LocalFile, schema: pa.Schema) -> bool:
        """Whether :meth:`stage_file` reads ``file`` into exactly the rows and types ``schema`` says.

        The engine asks only for a part whose batches would pass untransformed (no cast,
        check, filter or added column) and that nothing was staged from yet.
        """
        return False

    def stage_file(self, load: Load, chunk: StagedChunk, file: LocalFile, progress: Callable[[float], None]) -> int:
        """Stage a whole file (read by the destination itself) as one chunk, atomically; return its rows.

        Sets ``chunk.rows_read_end`` to those rows before the ledger row is written, and
        may call ``progress`` with the fraction done (from another thread) while it runs.
        """
        raise NotImplementedError

    @abstractmethod
    def is_published(self, load: Load) -> bool:
        """Whether ``load`` was already published (its id is in ``_conduit_loads``)."""

    @abstractmethod
    def publish(self, load: Load) -> int:
        """Make the staged rows visible at once per write mode; idempotent per load id.

        Applies ``load.changes`` (the statements of :meth:`ddl_for`) first, in the same
        transaction, so a failed run never leaves a half-evolved table.
        """

    @abstractmethod
    def abort(self, load: Load) -> None:
        """Drop whatever was staged for ``load``."""

    def leftovers(self, runs: Collection[str], remove: bool) -> list[str]:
        """What finished ``runs`` left staged here (staging objects, ledger rows); dropped when ``remove``.

        ``conduit gc`` calls it with the store's runs that no resume needs. Returns one
        description per object; the default finds nothing.
        """
        return []

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def describe(self) -> str:
        """A one-line, secret-free description for logs."""
        return self.name


@dataclass(frozen=True)
class Connector:
    """A ``type:`` name and the classes that implement it (either may be None)."""

    type: str
    source: builtins.type[Source] | None = None
    destination: builtins.type[Destination] | None = None
    version: str = ""
    extra: str = ""
    requires: tuple[str, ...] = ()
    """Modules its driver imports (lazily, at connect): the registry checks they are installed."""
