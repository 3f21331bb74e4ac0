"""``conduit plan``: what a run would do, resource by resource, without loading anything.

Per resource: the parts the source would read (files and their sizes, or the query),
the rows it estimates, the write mode and target table, the DDL the destination would
run on that table (:meth:`~conduit.connectors.base.Destination.plan_ddl`; None when the
destination cannot say) and the incremental window (the stored mark, the operator, the
value rows must exceed after the lookback). The schema comes from the first part, as in
``conduit validate``; what would fail the resource (a schema change in ``manual`` mode,
a source with no files) is its ``error``. Nothing is staged and no run is recorded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from conduit import quality
from conduit import schema as sch
from conduit.connectors.base import Load, Task
from conduit.errors import ConduitError, ConfigError, NotAColumn
from conduit.incremental import State
from conduit.progress import Reporter
from conduit.resource_load import _state_key
from conduit.runner import Context

if TYPE_CHECKING:
    from conduit.config import ResourceConfig
    from conduit.project import Project


@dataclass
class ResourcePlan:
    """What a run would do with one resource."""

    resource: str
    source: str
    source_type: str
    destination: str
    destination_type: str
    table: str
    write_mode: str
    primary_keys: list[str]
    parts: list[dict[str, Any]] | None = None
    """``{"name", "bytes"}`` per part (a file, or the query); None when the source cannot list them."""
    rows_estimated: int | None = None
    ddl: list[str] | None = None
    """Statements the publish would run on the table; None when the destination cannot say."""
    incremental: dict[str, Any] | None = None
    error: str | None = None
    """Why a run would fail this resource, or None."""

    def as_dict(self) -> dict[str, Any]:
        """The plan as plain JSON-able data."""
        return asdict(self)


def make(project: Project, resources: list[ResourceConfig], full_refresh: bool = False) -> list[ResourcePlan]:
    """Plan ``resources`` (already selected and checked by :func:`conduit.runner.plan`).

    Raises :class:`~conduit.errors.ConfigError` at the resource's line when a key names
    a column the source does not have; other failures are the resource's ``error``.
    """
    ctx = Context(project, "plan", Reporter(), None, full_refresh, project.store)
    try:
        return [_one(ctx, res) for res in resources]
    finally:
        ctx.close()


def _one(ctx: Context, res: ResourceConfig) -> ResourcePlan:
    project = ctx.project
    opts = project.table_options(res)
    out = ResourcePlan(res.name, res.source, project.source(res.source).type, res.destination, project.destination(res.destination).type, opts.table or res.name, opts.write_mode, opts.primary_keys)
    try:
        source, dest = ctx.source(res.source), ctx.destination(res.destination)
        out.table = opts.table or dest.default_table(res.name)
        state = State.load(ctx.store, res, ctx.full_refresh, _state_key(dest, out.table), opts.write_mode == "merge")
        out.incremental = window(state, res)
        task = Task(res, project.dir, state.filter)
        planned = source.plan_parts(task)
        out.parts = None if planned is None else [p._asdict() for p in planned]
        try:
            out.rows_estimated = source.estimate_rows(task)
        except Exception:  # noqa: BLE001 - an estimate is optional
            out.rows_estimated = None
        load = Load("plan", "plan", res.name, out.table, opts, json_columns=[c for c, t in res.columns.items() if sch.is_json_type(t)])
        parts = source.parts(task)
        try:
            part = next(parts, None)
            if part is not None:
                from conduit.transform import make_transform

                make_transform(res, source, dest, part, load, quality.Checks(res).evaluator(), lambda _: None)
                out.ddl = dest.plan_ddl(load)
        finally:
            close = getattr(parts, "close", None)  # a generator holding a connection (SQL sources)
            if close is not None:
                close()
    except NotAColumn as exc:
        i = project.config.resources.index(res)
        line = project.lines.get(("resources", i, exc.key), project.lines.get(("resources", i), 1))
        msg = f"{project.path.name}:{line}: resources[{i}].{exc.key}: {exc.detail}"
        raise ConfigError(msg) from None
    except ConduitError as exc:
        out.error = str(exc)
    return out


def window(state: State, res: ResourceConfig) -> dict[str, Any] | None:
    """The incremental window of ``state``: column, stored mark, operator, the value rows must pass, lookback."""
    if state.column is None:
        return None
    since = state.since
    return {
        "column": state.column,
        "mark": state.before_text,
        "operator": ">=" if state.inclusive else ">",
        "since": None if since is None else str(since),
        "lookback": None if res.incremental_lookback is None else str(res.incremental_lookback),
        "full_refresh": state.reset,
    }


def rows(plans: list[ResourcePlan]) -> tuple[list[str], list[tuple[object, ...]]]:
    """The plan as a table for people: one row per resource."""
    columns = ["resource", "source -> table", "write mode", "parts", "rows (est.)", "incremental", "error"]
    out: list[tuple[object, ...]] = [(p.resource, f"{p.source} ({p.source_type}) -> {p.destination}: {p.table}", _mode(p), _parts(p), "" if p.rows_estimated is None else f"{p.rows_estimated:,}", _window(p), p.error or "") for p in plans]
    if not any(p.error for p in plans):
        columns, out = columns[:-1], [r[:-1] for r in out]
    return columns, out


def ddl_lines(plans: list[ResourcePlan]) -> list[str]:
    """The DDL of every resource that has some, under a comment naming it."""
    out = []
    for p in plans:
        if p.ddl:
            out += [f"-- {p.resource}", *p.ddl]
        elif p.ddl is None and not p.error:
            out.append(f"-- {p.resource}: DDL not known for {p.destination_type}")
    return out


def _mode(p: ResourcePlan) -> str:
    return f"{p.write_mode} on {', '.join(p.primary_keys)}" if p.write_mode == "merge" else p.write_mode


def _parts(p: ResourcePlan) -> str:
    if p.parts is None:
        return "unknown"
    if len(p.parts) == 1 and p.parts[0]["bytes"] is None:
        return " ".join(str(p.parts[0]["name"]).split())
    size = sum(part["bytes"] or 0 for part in p.parts)
    return f"{len(p.parts)} file{'' if len(p.parts) == 1 else 's'}, {_bytes(size)}"


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _window(p: ResourcePlan) -> str:
    inc = p.incremental
    if inc is None:
        return "full read"
    if inc["since"] is None:
        return f"{inc['column']}: {'full refresh' if inc['full_refresh'] else 'no mark yet'}, all rows"
    lookback = f" (mark {inc['mark']} - {inc['lookback']})" if inc["lookback"] else ""
    return f"{inc['column']} {inc['operator']} {inc['since']}{lookback}"
