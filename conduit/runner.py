"""The run loop: the selected resources in config order, one store per run, resume.

:func:`run` is the library entry point; the CLI is a thin layer over it. A run loads a
project (:mod:`conduit.project`), checks the plan, starts or resumes a run in the store,
and hands each resource to a :class:`~conduit.resource_load.ResourceLoad`.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from conduit import _runtime, schedule
from conduit._version import __version__
from conduit.config import ResourceConfig
from conduit.connectors import registry
from conduit.connectors.base import Destination, Load, Source
from conduit.engines.base import Engine
from conduit.engines.local import LocalEngine
from conduit.errors import ConfigError, LeaseHeld, RunFailed
from conduit.leases import WAIT_POLL_S, Lease, live_holders
from conduit.logs import RunLog
from conduit.progress import Reporter, Reporters
from conduit.project import Project, load_project
from conduit.results import ResourceResult, RunResult
from conduit.selection import select
from conduit.store import Checkpointer, Store


@dataclass
class Context:
    """Everything one run shares: project, store, connectors, reporter."""

    project: Project
    run_id: str
    reporter: Reporter
    batch_size: int | None
    full_refresh: bool
    store: Store
    """The local store: one object per run, so its tables are checked once."""
    resumed_status: dict[str, str] = field(default_factory=dict)
    """The status of each resource in the interrupted run this run resumes (``running``: the crash's)."""
    sources: dict[tuple[str, int], Source] = field(default_factory=dict)
    destinations: dict[tuple[str, int], Destination] = field(default_factory=dict)
    engine: Engine = field(default_factory=lambda: LocalEngine(1))
    """Schedules the resources and the part jobs of each load (:mod:`conduit.engines`)."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @cached_property
    def checkpointer(self) -> Checkpointer:
        """Writes chunk checkpoints to the store in the background (flushed before publish)."""
        return self.store.checkpointer()

    def source(self, name: str) -> Source:
        """The source connector called ``name`` (created once per run and thread: resources run on threads)."""
        key = (name, threading.get_ident())
        with self._lock:
            if key not in self.sources:
                self.sources[key] = self.project.new_source(name)
            return self.sources[key]

    def destination(self, name: str) -> Destination:
        """The destination connector called ``name`` (created once per run and thread, so each has its own connections)."""
        key = (name, threading.get_ident())
        with self._lock:
            if key not in self.destinations:
                self.destinations[key] = self.project.new_destination(name)
            return self.destinations[key]

    def close(self) -> None:
        """Close every destination connection."""
        for dest in self.destinations.values():
            dest.close()


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
    wait: bool = False,
    exclude: list[str] | None = None,
    target: str | None = None,
    raise_on_error: bool = False,
    workers: int | None = None,
    engine: str | None = None,
    address: str | None = None,
) -> RunResult:
    """Run the resources of an ingest.yml; return what happened (prints nothing itself).

    Parameters
    ----------
    config_path
        The ingest.yml (or its folder).
    resources
        Selectors of the resources to run (names, globs, ``tag:NAME``: :mod:`conduit.selection`); all when None.
    resume
        Continue the newest interrupted run of this config.
    full_refresh
        Ignore and reset incremental state.
    batch_size
        Rows per batch, overriding the config.
    reporter
        Progress sink; silent when None.
    wait
        When another live run holds one of the resources (its lease), wait for it to
        end instead of raising :class:`~conduit.errors.LeaseHeld`.
    workers
        Resources (and parts of one resource) loaded at once; default: the machine's
        cores. Results stay in config order.
    engine
        Where part jobs run: ``local`` or ``ray`` (default: ``engine:`` in the config).
    address
        The Ray cluster for the ``ray`` engine (default: ``engine.address``).
    exclude
        Selectors of resources not to run.
    target
        The target (:mod:`conduit.targets`); else ``CONDUIT_TARGET``, else ``default_target``.
    raise_on_error
        Raise :class:`~conduit.errors.RunFailed` (carrying the result) when a resource
        failed, instead of returning a failed result (for orchestrators' tasks).

    Every run logs its events to the ``conduit`` logger (:mod:`conduit.logs`).

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
    from conduit.engines import engine_for
    from conduit.resource_load import ResourceLoad

    _runtime.tune_process()
    _runtime.arrow_allocator()
    project = load_project(config_path, target)
    selected = select(project, resources, exclude)
    plan(project, selected)
    log = RunLog()
    reporter = Reporters(reporter, log) if reporter else log  # bars first: a line printed above them shows them up to date
    store = project.store
    started = time.monotonic()
    runs_on = engine_for(project, engine, address, workers)  # before the run starts: a missing extra or cluster is exit 2
    try:
        run_id, resumed, previous, lease = _start(project, [r.name for r in selected], resume, wait, reporter)
    except BaseException:
        runs_on.close()
        raise
    try:
        done = store.resource_status(run_id) if resumed else {}
        ctx = Context(project, run_id, reporter, batch_size, full_refresh, store, done, engine=runs_on)
        if previous and not resumed:
            reporter.message(f"previous run {previous} was interrupted and its config changed: discarding its staged data and starting over")
            _discard(ctx, previous)
        results: list[ResourceResult] = []
        try:
            pending = [res for res in selected if done.get(res.name) not in ("success", "partial_success")]
            started_first = schedule.largest_first(pending, ctx.engine.workers, ctx.source, project.dir)  # when they do not all fit at once
            loaded = {r.name: r for r in ctx.engine.map_resources(lambda res: ResourceLoad(ctx, res).run(), started_first)}
            results = [loaded[res.name] for res in pending]
        except KeyboardInterrupt:
            _interrupted(ctx)
            raise
        finally:
            ctx.close()
            ctx.engine.close()
            reporter.close()
        status = "failed" if any(r.status == "failed" for r in results) else "partial_success" if any(r.rows_dlq for r in results) else "success"
        errors = "; ".join(f"{r.name}: {r.error}" for r in results if r.error)
        store.finish_run(run_id, status, errors or None)
    finally:
        lease.release()
    result = RunResult(run_id, status, results, resumed)
    reporter.run_finished(result, time.monotonic() - started)
    if raise_on_error and result.exit_code:
        raise RunFailed(result)
    return result


def _start(project: Project, names: list[str], resume: bool, wait: bool, reporter: Reporter) -> tuple[str, bool, str | None, Lease]:
    """Pick the run (resume the newest unfinished one nobody holds, or a new one) and lease its resources.

    Returns (run id, resumed, the unfinished run found, the lease, already heartbeating).
    A resource leased by a live run raises :class:`~conduit.errors.LeaseHeld`, or, with
    ``wait``, waits until it is released.
    """
    store, config_path = project.store, str(project.path)
    waiting = False
    while True:
        previous = store.unfinished_run(config_path, {h.run_id for h in live_holders(store)})
        resumed = bool(previous and (resume or _same_config(store, previous, project.config_hash)))
        run_id = previous if previous and resumed else time.strftime("%Y%m%dT%H%M%S") + "_" + uuid.uuid4().hex[:6]
        lease = Lease(store, run_id, names)
        try:
            lease.acquire()
            break
        except LeaseHeld as exc:
            if not wait:
                raise
            if not waiting:
                reporter.message(f"{exc}; waiting for it to finish")
                waiting = True
            time.sleep(WAIT_POLL_S)
    lease.start_heartbeat()
    reporter.run_started(run_id, names, resumed)
    try:
        if resumed:
            reporter.message(f"resuming interrupted run {run_id}")
            store.resume_run(run_id)
        else:
            if resume:
                reporter.message("nothing to resume: starting a new run")
            store.start_run(run_id, config_path, project.config_hash, __version__)
    except BaseException:
        lease.release()
        raise
    return run_id, resumed, previous, lease


def _interrupted(ctx: Context) -> None:
    """Ctrl-C: record the run and its unfinished resources as ``interrupted`` (resumable), keeping what was staged."""
    with contextlib.suppress(Exception):
        ctx.checkpointer.flush()
    ctx.store.interrupt_run(ctx.run_id)


def _same_config(store: Store, run_id: str, config_hash: str) -> bool:
    _, rows = store.query(f"SELECT config_hash FROM runs WHERE run_id = '{run_id}'")
    return bool(rows) and rows[0][0] == config_hash


def _discard(ctx: Context, run_id: str) -> None:
    """Close an interrupted run: loads it already published are recorded, the rest dropped."""
    for res in ctx.project.config.resources:
        dest = ctx.destination(res.destination)
        load = Load(f"{run_id}_{res.name}", run_id, res.name, "", ctx.project.table_options(res))
        if not dest.is_published(load):
            dest.abort(load)
    ctx.store.finish_run(run_id, "failed", "interrupted; superseded by run " + ctx.run_id)
