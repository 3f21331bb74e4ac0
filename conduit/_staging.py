"""The chunk loop of a load: parts -> transformed steps -> staged chunks -> one publish.

:func:`stream` reads every part of a task through :mod:`conduit._pipeline`, cuts the
step stream into chunks (the unit of checkpoint and resume), stages each chunk on the
destination (on this thread, or on several workers through ``ParallelStager``),
checkpoints it in the store, and finally publishes once. Counting, dead letters and
incremental marks are accounted per step (:func:`_account`).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from conduit import _faults
from conduit.connectors.base import Destination, Load, Seekable, Source, StagedChunk, Task
from conduit.errors import ConduitError, QualityCheckFailed, SourceError

if TYPE_CHECKING:
    from conduit.config import ResourceConfig
    from conduit.engine import Context, ResourceResult

CHUNK_BATCHES = 16  # the first chunk (the unit of checkpoint and resume) of a part: up to this many batches (~2M rows by default)
LATER_CHUNK_BATCHES = 64  # later chunks of the part, where no stage runs in parallel (see below)
PARALLEL_CHUNK_BATCHES = 2  # smaller chunks when several stage at once (keeps memory bounded)
DLQ_CHUNK_ROWS = 2_000_000  # a chunk ends early once it holds this many dead letters (they wait in memory until it commits)
"""A destination pays a fixed price per chunk: DuckDB about 0.1 s per INSERT (on TPC-H
lineitem, inserting an in-memory table in 4 parts instead of 1 took 0.1-0.3 s longer, in
12 parts about 1 s). A part's first chunk stays small, so a crash early in a load loses
little; later ones are 4x larger, which keeps a crash's loss under ~8M rows; a chunk holding
:data:`DLQ_CHUNK_ROWS` dead letters ends early. Chunks staged in parallel are small throughout."""


def stream(ctx: Context, res: ResourceConfig, source: Source, dest: Destination, task: Task, load: Load, result: ResourceResult, state: Any, checks: Any, dlq: Any, positions: dict[str, int], chunk_no: int) -> bool:
    """Stage chunk after chunk, then publish; False when the source had no parts."""
    from conduit._pipeline import ParallelStager, is_direct, prefetch, stream_part

    transform = None
    batch_size = 0
    names: list[str] = []
    header_only = True  # every part is a CSV file with bytes (a header) but, so far, no rows
    stager = None
    try:
        for part_index, part in enumerate(source.parts(task)):
            result.bytes_read += part.bytes
            names.append(part.name)
            header_only = header_only and part.text_columns and part.bytes > 0
            if transform is None:
                transform = make_transform(ctx, res, dest, part, load, checks, state)
                workers = max(1, dest.stage_streams(load))
                batch_size = _batch_rows(ctx, load, max(1, dest.capabilities.parallel_stage))  # split as for every stream, even where this load uses fewer
                if workers > 1:
                    stager = ParallelStager(lambda cursor, reader: dest.stage(load, cursor, reader), transform.schema, workers)
            transform.row_filter = state.row_filter(part.name)
            if stager is None and _read_by_destination(part, transform, dest, state, positions.get(part.name, 0)):
                _stage_file(ctx, res, dest, load, part, StagedChunk(chunk_no, part.name, 0, 0), result, checks)
                chunk_no += 1
                continue
            steps = stream_part(part, part_index, transform, batch_size, positions.get(part.name, 0))
            if stager is None or not is_direct(part, transform):  # cheap untransformed batches go straight to the stager's queues
                steps = prefetch(steps)
            first, later = (PARALLEL_CHUNK_BATCHES, PARALLEL_CHUNK_BATCHES) if stager else (CHUNK_BATCHES, LATER_CHUNK_BATCHES)
            for chunk_steps in _chunks(steps, first, later, full=lambda: dlq.pending_rows >= DLQ_CHUNK_ROWS):
                cursor = StagedChunk(chunk_no, part.name, positions.get(part.name, 0), 0)
                if stager is not None:
                    feed = stager.start(cursor)
                    for step in chunk_steps:
                        _account(step, cursor, result, dlq, ctx, state, checks)
                        stager.put(feed, step.good)
                    _seal_dead_letters(dlq, checks, cursor.chunk)  # before the chunk's reader ends, so before it commits
                    stager.seal(feed)
                    for done, rows in stager.finished():
                        _staged(ctx, res, done.cursor, rows, result, checks)
                else:
                    _stage_one(ctx, res, dest, load, chunk_steps, transform.schema, cursor, result, dlq, state, checks)
                chunk_no += 1
        for done, rows in stager.finished(wait=True) if stager else []:
            _staged(ctx, res, done.cursor, rows, result, checks)
    finally:
        if stager is not None:
            stager.shutdown()
    if transform is None:
        return False
    if result.rows_read == 0 and header_only and state.before is None:
        msg = f"{res.name}: no data rows in {', '.join(names)} (header only)"
        raise SourceError(msg)
    load.schema = transform.schema
    checks.enforce_limits(result, final=True)
    path = dlq.gather()
    result.dlq_path = str(path) if path else None
    ctx.checkpointer.flush()  # resume after a crash past publish counts rows from them
    _faults.point("publish")
    published = dest.publish(load)
    _faults.point("published")
    dlq.cleanup()
    if state.null_rows:
        result.checks[f"null {state.column}"] = state.null_rows
    if load.write_mode == "merge":
        result.rows_written = published  # after last-row-wins deduplication
    return True


def _batch_rows(ctx: Context, load: Load, workers: int) -> int:
    """Rows per batch: as asked (``--batch-size``, then the config), else the default split between the staging workers.

    Each worker holds its own batches, so splitting the default keeps the rows in
    flight (and peak RSS) about the same however many COPY streams run. A load that
    stages on fewer streams than its destination offers (a PostgreSQL append straight
    into its table) keeps the split size: on SF1 lineitem from CSV, whole batches on one
    stream peaked at 576-581 MiB, split ones at 469-476 MiB, in the same time.
    """
    if ctx.batch_size:
        return ctx.batch_size
    if "batch_size" in load.options.model_fields_set:
        return load.options.batch_size
    return max(1, load.options.batch_size // workers)


def _read_by_destination(part: Any, transform: Any, dest: Destination, state: Any, skip: int) -> bool:
    """Whether the destination reads ``part``'s file itself: a whole local file whose rows pass untransformed.

    Nothing may be staged from the part yet (the file is one chunk) and no incremental
    column may be tracked (its high-water mark is taken from the batches).
    """
    from conduit._pipeline import is_direct

    return part.local is not None and not skip and state.column is None and is_direct(part, transform) and dest.reads(part.local, transform.schema)


def _stage_file(ctx: Context, res: ResourceConfig, dest: Destination, load: Load, part: Any, cursor: StagedChunk, result: ResourceResult, checks: Any) -> None:
    """Stage a whole file as one chunk, read by the destination; progress from its fraction done."""
    _faults.point("read")
    total, shown = part.frame.num_rows if isinstance(part.frame, Seekable) else None, 0

    def progress(fraction: float) -> None:
        nonlocal shown
        rows = int(fraction * total) - shown if total else 0
        if rows > 0:
            ctx.reporter.advance(res.name, rows)
            shown += rows

    rows = dest.stage_file(load, cursor, part.local, progress)
    result.rows_read += rows
    ctx.reporter.advance(res.name, max(rows - shown, 0))
    _staged(ctx, res, cursor, rows, result, checks)


def _stage_one(ctx: Context, res: ResourceConfig, dest: Destination, load: Load, steps: Iterator[Any], schema: Any, cursor: StagedChunk, result: ResourceResult, dlq: Any, state: Any, checks: Any) -> None:
    """Stage one chunk on this thread; the reader's own error wins over the destination's wrapping."""
    failed: list[ConduitError] = []
    reader = _reader(steps, schema, cursor, result, dlq, ctx, state, checks, failed)
    try:
        rows = dest.stage(load, cursor, reader)
    except BaseException as exc:
        cause = failed[0] if failed else exc
        if isinstance(cause, QualityCheckFailed):
            dlq.flush_chunk(cursor.chunk)  # the rows dead-lettered before the failing batch
        else:
            dlq.discard(cursor.chunk)
        if cause is exc:
            raise
        raise cause from None
    _staged(ctx, res, cursor, rows, result, checks)


def _staged(ctx: Context, res: ResourceConfig, cursor: StagedChunk, rows: int, result: ResourceResult, checks: Any) -> None:
    """Bookkeeping after the destination committed a chunk: checkpoint, counts, limits."""
    _faults.point("staged")
    name, mark = decode_position(cursor.part)
    ctx.checkpointer.add(ctx.run_id, res.name, cursor.chunk, rows, name, cursor.rows_read_end, json.dumps(mark) if mark else None)
    result.rows_written += rows
    checks.enforce_limits(result)


def _seal_dead_letters(dlq: Any, checks: Any, chunk: int) -> None:
    """Persist a chunk's dead letters and new ``unique`` keys; must happen before the chunk commits."""
    dlq.save_keys(chunk, checks.chunk_keys())
    dlq.flush_chunk(chunk)


def encode_position(part: str, mark: list[Any] | None) -> str:
    """The ledger's ``part`` field: the part name plus the incremental mark so far (JSON)."""
    return json.dumps({"part": part, "mark": mark}) if mark else part


def decode_position(text: str) -> tuple[str, list[Any] | None]:
    if text.startswith('{"part"'):
        data = json.loads(text)
        return data["part"], data.get("mark")
    return text, None


def _chunks(steps: Iterator[Any], first: int, later: int, full: Callable[[], bool] = lambda: False) -> Iterator[Iterator[Any]]:
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

        def chunk(head: Any = head, size: int = size) -> Iterator[Any]:
            for step in itertools.chain([head], itertools.islice(it, size - 1)):  # the next step is taken only after full() is asked
                yield step
                if full():
                    return

        yield chunk()
        size = later


def _reader(steps: Iterator[Any], schema: Any, cursor: StagedChunk, result: ResourceResult, dlq: Any, ctx: Context, state: Any, checks: Any, failed: list[ConduitError]) -> Any:
    import pyarrow as pa

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            yield from read()
        except ConduitError as exc:
            failed.append(exc)
            raise

    def read() -> Iterator[pa.RecordBatch]:
        for step in steps:
            _account(step, cursor, result, dlq, ctx, state, checks)
            yield step.good
        _seal_dead_letters(dlq, checks, cursor.chunk)

    return pa.RecordBatchReader.from_batches(schema, batches())


def _account(step: Any, cursor: StagedChunk, result: ResourceResult, dlq: Any, ctx: Context, state: Any, checks: Any) -> None:
    """Count one step, queue its bad rows, advance the chunk's source position and mark."""
    _faults.point("read")
    checks.step_done()
    part = decode_position(cursor.part)[0]
    result.rows_read += step.rows_read
    result.rows_filtered += step.filtered
    cursor.rows_read_end = step.rows_read_end
    for name, n in step.warned.items():
        result.rows_warned += n
        result.checks[f"warn {name}"] = result.checks.get(f"warn {name}", 0) + n
    for bad in step.bad:
        dlq.add(bad.rows, part, bad.rows.get_column("_conduit_row_number"), bad.check, bad.error)
        result.rows_dlq += bad.rows.height
        for name, n in _count_checks(bad).items():
            result.checks[name] = result.checks.get(name, 0) + n
    state.observe(step.good)
    cursor.part = encode_position(part, state.mark())
    ctx.reporter.advance(result.name, step.rows_read)


def _count_checks(bad: Any) -> dict[str, int]:
    if isinstance(bad.check, str):
        if bad.check == "cast":
            cols = bad.error.str.extract(r"^column (.+?):", 1).value_counts()
            return {f"cast {c}": int(n) for c, n in cols.iter_rows()}
        return {bad.check: bad.rows.height}
    return {str(c): int(n) for c, n in bad.check.value_counts().iter_rows()}


def make_transform(ctx: Context, res: ResourceConfig, dest: Destination, part: Any, load: Load, checks: Any, state: Any) -> Any:
    """Target types from declared columns, CSV inference (text parts) and the schema mode."""
    import polars as pl

    from conduit import schema as sch
    from conduit._pipeline import Transform, compat_level, sample
    from conduit.coerce import Coercer
    from conduit.connectors.base import ERROR, RAW, RECHECK, ROW_NUMBER, SEQ

    lazy = isinstance(part.frame, pl.LazyFrame)
    in_schema = part.frame.collect_schema() if lazy else pl.DataFrame(part.frame.schema.empty_table()).schema  # type: ignore[union-attr]
    in_schema = pl.Schema({k: v for k, v in in_schema.items() if k not in (ROW_NUMBER, ERROR, RAW, RECHECK)})
    existing = None if load.write_mode == "replace" else dest.table_schema(load.table)
    targets: dict[str, pl.DataType] = {}
    undeclared = [c for c in in_schema if c != ROW_NUMBER and c not in res.columns]
    if part.text_columns and undeclared:
        sample_rows = getattr(getattr(ctx.source(res.source), "format_opts", None), "infer_rows", 100_000)
        targets.update(sch.infer_text_types(sample(part, sample_rows).select(undeclared)))
        if existing is not None:  # text columns take the existing table's types
            have = pl.DataFrame(existing.empty_table()).schema
            utc = {c: pl.Datetime(t.time_unit, "UTC") if isinstance(t, pl.Datetime) and t.time_zone else t for c, t in have.items()}
            targets.update({c: utc[c] for c in targets if c in utc and utc[c] != pl.Null})
    targets.update({col: sch.parse_type(t) for col, t in res.columns.items()})
    targets = {c: t for c, t in targets.items() if c in in_schema}
    coercer = Coercer(targets)
    out = coercer.output_schema(in_schema)
    views = dest.capabilities.arrow_views
    arrow_schema = pl.DataFrame(schema=out).to_arrow(compat_level=compat_level(views)).schema
    drop: list[str] = []
    if existing is not None:
        changes = sch.diff(arrow_schema, existing)
        apply, drop = sch.decide(changes, load.options.schema_evolution, load.table, lambda c: dest.ddl_for(load.table, c))
        if apply:
            load.changes = apply
            ctx.reporter.message(f"{res.name}: schema change applied at publish: " + "; ".join(c.describe() for c in apply))
        if drop:
            ctx.reporter.message(f"{res.name}: warning: columns not in {load.table} are not loaded: {', '.join(drop)}")
            arrow_schema = pa_drop(arrow_schema, drop)
    if load.write_mode == "merge":
        import pyarrow as pa

        arrow_schema = arrow_schema.append(pa.field(SEQ, pa.int64()))
    load.schema = arrow_schema
    return Transform(coercer, arrow_schema, checks=checks.evaluator(), drop=drop, add_seq=load.write_mode == "merge", views=views)


def pa_drop(schema: Any, names: list[str]) -> Any:
    """``schema`` without ``names``."""
    for name in names:
        schema = schema.remove(schema.get_field_index(name))
    return schema
