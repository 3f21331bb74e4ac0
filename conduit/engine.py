"""Plan and run: resources -> tasks -> staged chunks -> one atomic publish each.

:func:`run` is the library entry point; the CLI is a thin layer over it. The engine
owns the loop and nothing else: sources and destinations own their I/O, the store
owns the DuckDB file, :mod:`conduit._pipeline` owns the batch transform.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import traceback
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from conduit import __version__, _secrets, retry
from conduit.config import Project, ResourceConfig, load_project
from conduit.connectors import registry
from conduit.connectors.base import Destination, Load, Source, Task
from conduit.errors import ConduitError, ConfigError, QualityCheckFailed, StagingLost, UsageError
from conduit.progress import Reporter


@dataclass
class ResourceResult:
    """What happened to one resource."""

    name: str
    status: str = "pending"
    table: str = ""
    rows_read: int = 0
    rows_written: int = 0
    rows_dlq: int = 0
    rows_warned: int = 0
    rows_filtered: int = 0
    bytes_read: int = 0
    duration_s: float = 0.0
    error: str | None = None
    dlq_path: str | None = None
    hwm_before: str | None = None
    checks: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """The one line printed per resource."""
        if self.status == "failed":
            return f"{self.name}: failed: {(self.error or '').removeprefix(self.name + ': ')}"
        rate = self.rows_read / self.duration_s if self.duration_s > 0 else 0
        text = f"{self.name}: {self.rows_written:,} rows loaded into {self.table} in {self.duration_s:.1f}s ({rate:,.0f} rows/s)"
        if self.rows_filtered:
            text += f", {self.rows_filtered:,} already loaded (incremental)"
        if self.rows_written == 0 and self.hwm_before is not None:
            text += f", nothing newer than {self.hwm_before}"
        if self.rows_dlq:
            detail = ", ".join(f"{k}: {v:,}" for k, v in self.checks.items() if not k.startswith(("warn ", "null ")))
            text += f", {self.rows_dlq:,} dead-lettered ({detail}) -> {self.dlq_path}"
        if self.rows_warned:
            text += f", {self.rows_warned:,} warnings"
        for key, n in self.checks.items():
            if key.startswith("null "):
                text += f", {n:,} rows with NULL {key[5:]} loaded once"
        return text


@dataclass
class RunResult:
    """What :func:`run` returns."""

    run_id: str
    status: str
    resources: list[ResourceResult]
    resumed: bool = False

    @property
    def exit_code(self) -> int:
        """0 when every resource succeeded (dead letters allowed), else 1."""
        return 1 if any(r.status == "failed" for r in self.resources) else 0


@dataclass
class Context:
    """Everything one run shares: project, store, connectors, reporter."""

    project: Project
    run_id: str
    reporter: Reporter
    batch_size: int | None
    full_refresh: bool
    resumed_status: dict[str, str] = field(default_factory=dict)
    """The status of each resource in the interrupted run this run resumes (``running``: the crash's)."""
    sources: dict[str, Source] = field(default_factory=dict)
    destinations: dict[str, Destination] = field(default_factory=dict)

    @cached_property
    def store(self) -> Any:
        """The local store (one object per run, so its tables are created once)."""
        from conduit.store import Store

        return Store(self.project.state_path)

    @cached_property
    def checkpointer(self) -> Any:
        """Writes chunk checkpoints to the store in the background (flushed before publish)."""
        return self.store.checkpointer()

    def source(self, name: str) -> Source:
        """The source connector called ``name`` (created once per run)."""
        if name not in self.sources:
            cfg = self.project.source(name)
            cls = registry.get(cfg.type).source
            assert cls is not None
            self.sources[name] = cls(name, cls.Options.model_validate(cfg.options), self.project.dir)
        return self.sources[name]

    def destination(self, name: str) -> Destination:
        """The destination connector called ``name`` (created once per run)."""
        if name not in self.destinations:
            cfg = self.project.destination(name)
            cls = registry.get(cfg.type).destination
            assert cls is not None
            self.destinations[name] = cls(name, cls.Options.model_validate(cfg.options), self.project.dir)
        return self.destinations[name]

    def close(self) -> None:
        """Close every destination connection."""
        for dest in self.destinations.values():
            dest.close()


def select(project: Project, names: list[str] | None) -> list[ResourceConfig]:
    """The resources to run, in config order; unknown names are a usage error."""
    known = [r.name for r in project.config.resources]
    unknown = [n for n in names or [] if n not in known]
    if unknown:
        msg = f"unknown resource {unknown[0]!r}; known: {', '.join(known)}"
        raise UsageError(msg)
    return [r for r in project.config.resources if not names or r.name in names]


def plan(project: Project, resources: list[ResourceConfig]) -> None:
    """Check what config validation alone cannot: write modes against capabilities, types, checks."""
    from conduit import quality
    from conduit.schema import parse_type

    for i, res in enumerate(project.config.resources):
        if res not in resources:
            continue
        dest_cls = registry.get(project.destination(res.destination).type).destination
        opts = project.table_options(res)
        assert dest_cls is not None
        if opts.write_mode not in dest_cls.capabilities.write_modes:
            line = project.lines.get(("resources", i, "write_mode"), project.lines.get(("resources", i), 1))
            msg = f"{project.path.name}:{line}: resources[{i}].write_mode: {res.destination} ({project.destination(res.destination).type}) supports {', '.join(sorted(dest_cls.capabilities.write_modes))}, not {opts.write_mode}"
            raise ConfigError(msg)
        _check_identifiers(project, i, res, dest_cls.capabilities.max_identifier_bytes)
        for col, type_name in res.columns.items():
            try:
                parse_type(type_name)
            except ConfigError as exc:
                line = project.lines.get(("resources", i, "columns", col), 1)
                msg = f"{project.path.name}:{line}: resources[{i}].columns.{col}: {exc}"
                raise ConfigError(msg) from None
        quality.validate(project, i, res)


def _check_identifiers(project: Project, i: int, res: ResourceConfig, limit: int | None) -> None:
    """Refuse table, schema and column names the destination would truncate (PostgreSQL: 63 bytes)."""
    if limit is None:
        return
    opts = project.table_options(res)
    schema = project.destination(res.destination).options.get("db_schema")
    table = opts.table or res.name
    names = [("table" if opts.table else "name", n) for n in table.split(".")] + [("columns", c) for c in res.columns]
    names += [("primary_keys", c) for c in opts.primary_keys] + [("partition_by", c) for c in opts.partition_by]
    names += [("destination", schema)] if isinstance(schema, str) else []
    for key, name in names:
        if len(name.encode()) > limit:
            line = project.lines.get(("resources", i, key), project.lines.get(("resources", i), 1))
            msg = f"{project.path.name}:{line}: resources[{i}].{key}: {name[:20]}... is {len(name.encode())} bytes; {res.destination} keeps at most {limit} bytes of a name"
            raise ConfigError(msg)


def run(
    config_path: str | Path = "ingest.yml",
    resources: list[str] | None = None,
    resume: bool = False,
    full_refresh: bool = False,
    batch_size: int | None = None,
    reporter: Reporter | None = None,
) -> RunResult:
    """Run the resources of an ingest.yml; return what happened (prints nothing itself).

    Parameters
    ----------
    config_path
        The ingest.yml (or its folder).
    resources
        Names to run; all when None.
    resume
        Continue the newest interrupted run of this config.
    full_refresh
        Ignore and reset incremental state.
    batch_size
        Rows per batch, overriding the config.
    reporter
        Progress sink; silent when None.

    Examples
    --------
    >>> import conduit, pathlib, tempfile
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "data.csv").write_text("id,name\\n1,a\\n2,b\\n")
    >>> _ = (d / "ingest.yml").write_text('''
    ... sources: [{name: files, type: csv, path: .}]
    ... destinations: [{name: local, type: duckdb}]
    ... resources: [{name: people, source: files, destination: local, path: data.csv}]
    ... ''')
    >>> result = conduit.run(d / "ingest.yml")
    >>> result.status, result.resources[0].rows_written
    ('success', 2)
    """
    from conduit import incremental

    _arrow_allocator()
    project = load_project(config_path)
    selected = select(project, resources)
    plan(project, selected)
    reporter = reporter or Reporter()
    store = Context(project, "", reporter, batch_size, full_refresh).store
    config_path_s = str(project.path)
    previous = store.unfinished_run(config_path_s)
    resumed = False
    if previous and (resume or _same_config(store, previous, project.config_hash)):
        run_id, resumed = previous, True
        reporter.message(f"resuming interrupted run {run_id}")
        store.resume_run(run_id)
    else:
        if resume:
            reporter.message("nothing to resume: starting a new run")
        run_id = time.strftime("%Y%m%dT%H%M%S") + "_" + uuid.uuid4().hex[:6]
        store.start_run(run_id, config_path_s, project.config_hash, __version__)
    done = store.resource_status(run_id) if resumed else {}
    ctx = Context(project, run_id, reporter, batch_size, full_refresh, done)
    ctx.store = store  # one Store object per run: its tables are checked once
    if previous and not resumed:
        reporter.message(f"previous run {previous} was interrupted and its config changed: discarding its staged data and starting over")
        _discard(ctx, previous, store)
    results: list[ResourceResult] = []
    try:
        for res in selected:
            if done.get(res.name) in ("success", "partial_success"):
                continue
            results.append(_run_resource(ctx, res, incremental))
    finally:
        ctx.close()
        reporter.close()
    status = "failed" if any(r.status == "failed" for r in results) else "partial_success" if any(r.rows_dlq for r in results) else "success"
    errors = "; ".join(f"{r.name}: {r.error}" for r in results if r.error)
    store.finish_run(run_id, status, errors or None)
    return RunResult(run_id, status, results, resumed)


def _arrow_allocator() -> None:
    """Arrow allocates through jemalloc where pyarrow has it, unless ``ARROW_DEFAULT_MEMORY_POOL`` says otherwise.

    pyarrow's default, mimalloc, hands freed batches back to the kernel and faults them
    in again. On TPC-H lineitem SF1 Parquet -> DuckDB (4 paired runs on 2 cores) jemalloc
    halved the system time (1.1 -> 0.5 s), the median run went from 3.81 to 3.45 s and peak
    RSS from 745 to 690 MiB. The pool is process-wide: a program that calls :func:`run`
    gets it too.
    """
    if "ARROW_DEFAULT_MEMORY_POOL" in os.environ:
        return
    import pyarrow as pa

    with contextlib.suppress(NotImplementedError):  # a pyarrow built without jemalloc
        pa.set_memory_pool(pa.jemalloc_memory_pool())


def _same_config(store: Any, run_id: str, config_hash: str) -> bool:
    _, rows = store.query(f"SELECT config_hash FROM runs WHERE run_id = '{run_id}'")
    return bool(rows) and rows[0][0] == config_hash


def _discard(ctx: Context, run_id: str, store: Any) -> None:
    """Close an interrupted run: loads it already published are recorded, the rest dropped."""
    for res in ctx.project.config.resources:
        dest = ctx.destination(res.destination)
        load = Load(f"{run_id}_{res.name}", run_id, res.name, "", ctx.project.table_options(res))
        if not dest.is_published(load):
            dest.abort(load)
    store.finish_run(run_id, "failed", "interrupted; superseded by run " + ctx.run_id)


def _run_resource(ctx: Context, res: ResourceConfig, incremental: Any) -> ResourceResult:
    from conduit import schema as sch

    opts = ctx.project.table_options(res)
    result = ResourceResult(res.name)
    started = time.monotonic()
    store = ctx.store
    try:
        source, dest = ctx.source(res.source), ctx.destination(res.destination)
        table = opts.table or dest.default_table(res.name)
        result.table = table
        json_columns = [c for c, t in res.columns.items() if sch.is_json_type(t)]
        load = Load(f"{ctx.run_id}_{res.name}", ctx.run_id, res.name, table, opts, json_columns=json_columns)
        target = _target(dest, table)
        state = incremental.State.load(store, res, ctx.full_refresh, target, opts.write_mode == "merge")
        result.hwm_before = state.before_text
        store.start_resource(ctx.run_id, res.name, res.source, res.destination, table, opts.write_mode, state.before_text)
        task = Task(res, ctx.project.dir, state.filter)
        ctx.reporter.start(res.name, _safe(lambda: source.estimate_rows(task)))
        waits = retry.delays(*_retry_settings(ctx, res))
        for attempt in range(len(waits) + 1):
            try:
                if dest.is_published(load):
                    ctx.reporter.message(f"{res.name}: load {load.load_id} was already published before the crash; recording it")
                    _record_published(ctx, res, result, state)
                else:
                    _load(ctx, res, source, dest, task, load, result, state)
                break
            except ConduitError as exc:
                if not exc.retryable or attempt == len(waits):
                    raise
                ctx.reporter.message(f"{res.name}: {_secrets.redact(str(exc))}; retrying in {waits[attempt]:.1f}s (attempt {attempt + 2} of {len(waits) + 1})")
                result, state = _retrying(ctx, res, dest, result, incremental.State.load(store, res, ctx.full_refresh, target, opts.write_mode == "merge"))
                time.sleep(waits[attempt])
        result.status = "partial_success" if result.rows_dlq else "success"
        hwm = state.commit(store, ctx.run_id)
        fields = {"hwm_after": hwm}
    except Exception as exc:  # noqa: BLE001 - every failure is recorded, unknown ones with traceback
        result.status = "failed"
        result.error = _secrets.redact(str(exc) if isinstance(exc, ConduitError) else f"{type(exc).__name__}: {exc}")
        if not isinstance(exc, ConduitError):
            result.error += "\n" + _secrets.redact(traceback.format_exc())
        fields = {}
        with contextlib.suppress(Exception):  # the original error matters more
            ctx.checkpointer.flush()
        try:
            if "load" in locals() and "dest" in locals():
                dest.abort(load)
        except Exception:  # noqa: BLE001, S110 - the original error matters more
            pass
    result.duration_s = time.monotonic() - started
    store.finish_resource(
        ctx.run_id,
        res.name,
        status=result.status,
        rows_read=result.rows_read,
        rows_written=result.rows_written,
        rows_dlq=result.rows_dlq,
        rows_warned=result.rows_warned,
        rows_filtered=result.rows_filtered,
        bytes_read=result.bytes_read,
        error=(result.error or "").split("\n")[0] or None,
        dlq_path=result.dlq_path,
        checks_json=result.checks,
        duration_s=result.duration_s,
        **fields,
    )
    ctx.reporter.finish(res.name, result.summary().split("\n")[0], result.status != "failed")
    return result


def _retry_settings(ctx: Context, res: ResourceConfig) -> tuple[int, float, float]:
    settings = ctx.project.destination(res.destination).retry
    return settings.attempts, settings.backoff_s, settings.max_backoff_s


def _retrying(ctx: Context, res: ResourceConfig, dest: Destination, failed: ResourceResult, state: Any) -> tuple[ResourceResult, Any]:
    """Fresh counts and ``state`` (as loaded again) for another attempt; it resumes from what the destination durably staged."""
    with contextlib.suppress(Exception):
        ctx.checkpointer.flush()
    dest.close()  # its connections may be dead; the next use opens new ones
    ctx.resumed_status.setdefault(res.name, "retry")  # the store's checkpoints are rebuilt from the destination's ledger
    result = ResourceResult(res.name)
    result.table, result.hwm_before = failed.table, failed.hwm_before
    return result, state


def _target(dest: Destination, table: str) -> tuple[str, str, str]:
    """The incremental state's key: (destination as described, schema, table)."""
    from conduit._sql import split_table

    options = dest.options
    schema, name = split_table(table, getattr(options, "db_schema", None) or getattr(options, "dataset", None) or "")
    return dest.describe(), schema, name


def _safe(fn: Any) -> Any:
    try:
        return fn()
    except Exception:  # noqa: BLE001 - an estimate is optional
        return None


def _load(ctx: Context, res: ResourceConfig, source: Source, dest: Destination, task: Task, load: Load, result: ResourceResult, state: Any) -> None:
    """Stream every part through the transform into staged chunks, then publish once."""
    from conduit import quality
    from conduit._staging import decode_position, stream
    from conduit.dlq import DeadLetters
    from conduit.store import Store

    lost: StagingLost | None = None
    try:
        staged = dest.staged(load)
    except StagingLost as exc:
        lost = exc
        ctx.reporter.message(f"{res.name}: {lost}; staging from the start")
        dest.abort(load)
        staged = []  # chunks are numbered afresh
    positions: dict[str, int] = {}
    rows = []
    for c in staged:
        name, mark = decode_position(c.part)
        positions[name] = c.rows_read_end
        state.restore(mark)
        result.rows_written += c.rows
        rows.append((ctx.run_id, res.name, c.chunk, c.rows, name, c.rows_read_end, json.dumps(mark) if mark else None))
    if res.name in ctx.resumed_status:
        ctx.store.set_checkpoints(ctx.run_id, res.name, rows)
    result.rows_read += sum(positions.values())
    chunk_no = len(staged)
    dlq = DeadLetters(Store(ctx.project.state_path).dlq_dir, ctx.run_id, res.name)
    result.rows_dlq += dlq.resume(chunk_no)
    checks = quality.Checks(res, ctx.project)
    checks.restore(dlq.load_keys(chunk_no))  # unique keys of the chunks already staged
    if staged:
        ctx.reporter.message(f"{res.name}: resuming after {chunk_no} staged chunk(s), {result.rows_written:,} rows already staged")
    elif ctx.resumed_status.get(res.name) == "running" and lost is None:  # the crash's resource, with nothing that lasted
        ctx.reporter.message(f"{res.name}: nothing was durably staged before the interruption; loading from the start")
    try:
        published = stream(ctx, res, source, dest, task, load, result, state, checks, dlq, positions, chunk_no)
    except QualityCheckFailed:
        path = dlq.gather()  # what was dead-lettered up to the failure, for inspection
        result.dlq_path = str(path) if path else None
        dlq.cleanup()
        raise
    if published:
        _record_schema(ctx, res, load)


def _record_published(ctx: Context, res: ResourceConfig, result: ResourceResult, state: Any) -> None:
    """Bookkeeping for a load the destination committed before a crash: counts from checkpoints."""
    from conduit.dlq import DeadLetters
    from conduit.store import Store

    ends: dict[str, int] = {}
    for _chunk, rows, part, end, mark in ctx.store.checkpoints(ctx.run_id, res.name):
        result.rows_written += rows
        ends[part] = end
        state.restore(json.loads(mark) if mark else None)
        state.new_files.add(part)
    result.rows_read = sum(ends.values())
    dlq = DeadLetters(Store(ctx.project.state_path).dlq_dir, ctx.run_id, res.name)
    result.rows_dlq = dlq.resume(1 << 30)
    path = dlq.gather()
    result.dlq_path = str(path) if path else None
    dlq.cleanup()


def _record_schema(ctx: Context, res: ResourceConfig, load: Load) -> None:
    from conduit.schema import without_views

    fields = [{"name": f.name, "type": str(without_views(f.type))} for f in load.schema or [] if not f.name.startswith("_conduit")]
    text = json.dumps(fields)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    change = "; ".join(c.describe() for c in load.changes) or "schema recorded"
    ctx.store.record_schema(res.name, text, digest, ctx.run_id, change)
