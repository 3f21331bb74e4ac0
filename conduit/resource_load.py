"""One resource's load: source parts -> transformed steps -> staged chunks -> one publish.

:class:`ResourceLoad` owns a resource's run: it resumes from the chunks the destination
already staged, reads every part through :mod:`conduit.batches` and
:mod:`conduit.transform`, and has :class:`~conduit.chunk_stream.ChunkStream` stage them chunk by chunk (the unit
of checkpoint and resume) and publish once; it retries a retryable failure and records
the outcome in the store.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from conduit import _secrets, retry
from conduit import schema as sch
from conduit._sql import split_table
from conduit.chunk_stream import ChunkStream, Resume, RunContext, Target
from conduit.chunking import decode_parts
from conduit.connectors.base import Destination, Load, Task
from conduit.dead_letters import DeadLetters
from conduit.errors import ConduitError, QualityCheckFailed, StagingLost
from conduit.incremental import State
from conduit.quality import Checks
from conduit.results import ResourceResult

if TYPE_CHECKING:
    from conduit.config import ResourceConfig
    from conduit.store import CheckpointRow

T = TypeVar("T")


class ResourceLoad:
    """The run of one resource: source, coercion, checks, staging, publish, progress.

    Parameters
    ----------
    ctx
        The run it belongs to.
    res
        The resource's config.
    """

    def __init__(self, ctx: RunContext, res: ResourceConfig):
        self.ctx, self.res = ctx, res
        self.result = ResourceResult(res.name)
        self.dest: Destination | None = None
        self.load: Load | None = None

    def run(self) -> ResourceResult:
        """Load the resource, record the outcome in the store; failures are recorded, not raised."""
        ctx, res, result = self.ctx, self.res, self.result
        opts = ctx.project.table_options(res)
        started = time.monotonic()
        try:
            source, dest = ctx.source(res.source), ctx.destination(res.destination)
            self.dest = dest
            table = opts.table or dest.default_table(res.name)
            result.table = table
            json_columns = [c for c, t in res.columns.items() if sch.is_json_type(t)]
            load = self.load = Load(f"{ctx.run_id}_{res.name}", ctx.run_id, res.name, table, opts, json_columns=json_columns)
            key, merge = _state_key(dest, table), opts.write_mode == "merge"
            state = State.load(ctx.store, res, ctx.full_refresh, key, merge)
            result.hwm_before = state.before_text
            ctx.store.start_resource(ctx.run_id, res.name, res.source, res.destination, table, opts.write_mode, state.before_text)
            task = Task(res, ctx.project.dir, state.filter)
            ctx.reporter.start(res.name, _optional(lambda: source.estimate_rows(task)))
            settings = ctx.project.destination(res.destination).retry
            states = [state]

            def attempt() -> None:
                if dest.is_published(load):
                    ctx.reporter.message(f"{res.name}: load {load.load_id} was already published before the crash; recording it")
                    self._record_published(states[-1])
                else:
                    self._load(Target(source, dest, task, load, states[-1]))

            def again(exc: ConduitError, wait: float, n: int) -> None:
                ctx.reporter.message(f"{res.name}: {_secrets.redact(str(exc))}; retrying in {wait:.1f}s (attempt {n} of {settings.attempts})")
                self._reset_for_retry(dest)
                states.append(State.load(ctx.store, res, ctx.full_refresh, key, merge))

            retry.call(attempt, attempts=settings.attempts, base=settings.backoff_s, cap=settings.max_backoff_s, on_retry=again)
            result, state = self.result, states[-1]
            result.status = "partial_success" if result.rows_dlq else "success"
            fields = {"hwm_after": state.commit(ctx.store, ctx.run_id)}
        except Exception as exc:  # noqa: BLE001 - every failure is recorded, unknown ones with traceback
            result.status = "failed"
            result.error = _secrets.redact(str(exc) if isinstance(exc, ConduitError) else f"{type(exc).__name__}: {exc}")
            if not isinstance(exc, ConduitError):
                result.error += "\n" + _secrets.redact(traceback.format_exc())
            fields = {}
            with contextlib.suppress(Exception):  # the original error matters more
                ctx.checkpointer.flush()
            try:
                if self.load is not None and self.dest is not None:
                    self.dest.abort(self.load)
            except Exception:  # noqa: BLE001, S110 - the original error matters more
                pass
        result.duration_s = time.monotonic() - started
        ctx.store.finish_resource(
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

    def _reset_for_retry(self, dest: Destination) -> None:
        """Fresh counts for another attempt, which resumes from what the destination durably staged."""
        with contextlib.suppress(Exception):
            self.ctx.checkpointer.flush()
        dest.close()  # its connections may be dead; the next use opens new ones
        self.ctx.resumed_status.setdefault(self.res.name, "retry")  # checkpoints are rebuilt from the destination's ledger
        failed, self.result = self.result, ResourceResult(self.res.name)
        self.result.table, self.result.hwm_before = failed.table, failed.hwm_before

    def _load(self, target: Target) -> None:
        """Resume from the chunks already staged, stream the rest, publish once."""
        ctx, res, result = self.ctx, self.res, self.result
        dest, load, state = target.dest, target.load, target.state
        lost: StagingLost | None = None
        try:
            staged = dest.staged(load)
        except StagingLost as exc:
            lost = exc
            ctx.reporter.message(f"{res.name}: {lost}; staging from the start")
            dest.abort(load)
            staged = []  # chunks are numbered afresh
        positions: dict[str, int] = {}
        done: set[str] = set()
        rows: list[CheckpointRow] = []
        for c in staged:
            names, mark, whole = decode_parts(c.part)
            if whole:  # a group of small files staged as one chunk
                done.update(names)
                result.rows_read += c.rows_read_end
            else:
                positions[names[0]] = max(positions.get(names[0], 0), c.rows_read_end)  # chunks of parts staged at once commit in any order
            state.restore(mark)
            result.rows_written += c.rows
            rows.append((ctx.run_id, res.name, c.chunk, c.rows, c.part if whole else names[0], c.rows_read_end, json.dumps(mark) if mark else None))
        if res.name in ctx.resumed_status:
            ctx.store.set_checkpoints(ctx.run_id, res.name, rows)
        result.rows_read += sum(positions.values())
        committed = {c.chunk for c in staged}
        chunk_no = max(committed, default=-1) + 1
        dlq = DeadLetters(ctx.store.dlq_dir, ctx.run_id, res.name)
        result.rows_dlq += dlq.resume(committed)
        checks = Checks(res, ctx.project)
        checks.restore(dlq.load_keys(committed))  # unique keys of the chunks already staged
        if staged:
            ctx.reporter.message(f"{res.name}: resuming after {len(staged)} staged chunk(s), {result.rows_written:,} rows already staged")
        elif ctx.resumed_status.get(res.name) in ("running", "interrupted") and lost is None:  # the crash's resource, with nothing that lasted
            ctx.reporter.message(f"{res.name}: nothing was durably staged before the interruption; loading from the start")
        stream = ChunkStream(self.ctx, self.res, self.result, target, Resume(checks, dlq, positions, chunk_no, done))
        try:
            published = stream.run()
        except QualityCheckFailed:
            path = dlq.gather()  # what was dead-lettered up to the failure, for inspection
            result.dlq_path = str(path) if path else None
            dlq.cleanup()
            raise
        if published:
            self._record_schema(load)

    def _record_published(self, state: State) -> None:
        """Bookkeeping for a load the destination committed before a crash: counts from checkpoints."""
        ctx, res, result = self.ctx, self.res, self.result
        ends: dict[str, int] = {}
        for _chunk, rows, part, end, mark in ctx.store.checkpoints(ctx.run_id, res.name):
            result.rows_written += rows
            names, _, whole = decode_parts(part)
            if whole:
                result.rows_read += end
            else:
                ends[names[0]] = max(ends.get(names[0], 0), end)
            state.restore(json.loads(mark) if mark else None)
            state.new_files.update(names)
        result.rows_read += sum(ends.values())
        dlq = DeadLetters(ctx.store.dlq_dir, ctx.run_id, res.name)
        result.rows_dlq = dlq.resume(None)
        path = dlq.gather()
        result.dlq_path = str(path) if path else None
        dlq.cleanup()

    def _record_schema(self, load: Load) -> None:
        fields = [{"name": f.name, "type": str(sch.without_views(f.type))} for f in load.schema or [] if not f.name.startswith("_conduit")]
        text = json.dumps(fields)
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        change = "; ".join(c.describe() for c in load.changes) or "schema recorded"
        self.ctx.store.record_schema(self.res.name, text, digest, self.ctx.run_id, change)


def _state_key(dest: Destination, table: str) -> tuple[str, str, str]:
    """The incremental state's key: (destination as described, schema, table)."""
    options = dest.options
    schema, name = split_table(table, getattr(options, "db_schema", None) or getattr(options, "dataset", None) or "")
    return dest.describe(), schema, name


def _optional(fn: Callable[[], T]) -> T | None:
    """``fn()``, or None when it fails (an estimate is optional)."""
    try:
        return fn()
    except Exception:  # noqa: BLE001 - an estimate is optional
        return None
