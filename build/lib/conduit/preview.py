"""``conduit schema infer`` / ``compare``: what a resource would load, and how it differs.

Reads only the first part of the source (and a sample for CSV), never loads.
"""

from __future__ import annotations

from pathlib import Path

from conduit import quality
from conduit.connectors.base import Load, Task
from conduit.progress import Reporter
from conduit.project import load_project
from conduit.runner import Context, select
from conduit.transform import make_transform


def _transform(config: Path, resource: str) -> tuple[Context, Load]:
    project = load_project(config)
    (res,) = select(project, [resource])
    ctx = Context(project, "inspect", Reporter(), None, False, project.store)
    source, dest = ctx.source(res.source), ctx.destination(res.destination)
    opts = project.table_options(res).model_copy(update={"schema_evolution": "warn"})
    load = Load("inspect", "inspect", res.name, opts.table or dest.default_table(res.name), opts)
    part = next(iter(source.parts(Task(res, project.dir))))
    make_transform(res, source, dest, part, load, quality.Checks(res).evaluator(), ctx.reporter.message)
    return ctx, load


def infer(config: Path, resource: str) -> list[tuple[str, str]]:
    """(column, Arrow type) pairs Conduit would load."""
    ctx, load = _transform(config, resource)
    ctx.close()
    return [(f.name, str(f.type)) for f in load.schema or []]


def compare(config: Path, resource: str) -> list[str]:
    """One line per difference between the source schema and the destination table."""
    from conduit import schema as sch

    ctx, load = _transform(config, resource)
    try:
        existing = ctx.destination(_dest_of(ctx, resource)).table_schema(load.table)
    finally:
        ctx.close()
    if existing is None or load.schema is None:
        return [f"{load.table} does not exist yet; it will be created"]
    return [c.describe() for c in sch.diff(load.schema, existing)]


def _dest_of(ctx: Context, resource: str) -> str:
    return next(r.destination for r in ctx.project.config.resources if r.name == resource)
