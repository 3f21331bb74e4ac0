"""``conduit schema infer`` / ``compare``: what a resource would load, and how it differs.

Reads only the first part of the source (and a sample for CSV), never loads. Both
commands see the schema a run would load *before* its ``schema_evolution`` mode decides
anything, so ``compare`` lists every new, missing and changed column whatever the mode;
Conduit's own columns (``_conduit_seq``, ``_conduit_*``) are left out of both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from conduit import quality
from conduit.config import ResourceConfig
from conduit.connectors.base import Destination, Load, Part, Task
from conduit.errors import ConfigError, NotAColumn, SourceError, UsageError
from conduit.progress import Reporter
from conduit.project import load_project
from conduit.runner import Context
from conduit.transform import make_transform

if TYPE_CHECKING:
    import pyarrow as pa

    from conduit.schema import Change

OWN_PREFIX = "_conduit_"  # columns Conduit adds itself (the merge order column ``_conduit_seq``...)
T = TypeVar("T")


def _load_of(ctx: Context, res: ResourceConfig, evolve: bool = True) -> Load:
    """The load ``res`` would make, its schema set from the source's first part (before the schema mode, unless ``evolve``)."""
    source, dest = ctx.source(res.source), ctx.destination(res.destination)
    opts = ctx.project.table_options(res).model_copy(update={"schema_evolution": "warn"})
    load = Load("inspect", "inspect", res.name, opts.table or dest.default_table(res.name), opts)
    make_transform(res, source, dest, _first_part(ctx, res), load, quality.Checks(res).evaluator(), ctx.reporter.message, evolve)
    return load


def _first_part(ctx: Context, res: ResourceConfig) -> Part:
    part = next(iter(ctx.source(res.source).parts(Task(res, ctx.project.dir))), None)
    if part is None:
        msg = f"{res.name}: the source has no rows to read"
        raise SourceError(msg)
    return part


def check(ctx: Context) -> None:
    """What a run would find first, before any data moves: every resource's source opens and its key columns exist.

    Raises :class:`~conduit.errors.ConfigError` at the resource's line in the config.
    """
    project = ctx.project
    for i, res in enumerate(project.config.resources):
        try:
            _load_of(ctx, res)
        except NotAColumn as exc:
            line = project.lines.get(("resources", i, exc.key), project.lines.get(("resources", i), 1))
            msg = f"{project.path.name}:{line}: resources[{i}].{exc.key}: {exc.detail}"
            raise ConfigError(msg) from None
        except (SourceError, ConfigError) as exc:
            msg = f"{project.path.name}:{project.lines.get(('resources', i), 1)}: resources[{i}]: {exc}"
            raise ConfigError(msg) from None


@dataclass
class Incoming:
    """What a resource would load into which table, beside what that table has now."""

    destination: Destination
    table: str
    schema: pa.Schema
    existing: pa.Schema | None
    json_columns: list[str]


def _inspect(config: Path, resource: str, target: str | None, use: Callable[[Incoming], T]) -> T:
    """``use`` the incoming schema of ``resource`` (its destination as ``target`` sets it) while the destination is open."""
    from conduit import schema as sch

    project = load_project(config, target)
    names = [r.name for r in project.config.resources]
    if resource not in names:
        msg = f"unknown resource {resource!r}: name one resource (resources: {', '.join(names) or 'none'})"
        raise UsageError(msg)
    res = project.config.resources[names.index(resource)]
    ctx = Context(project, "inspect", Reporter(), None, False, project.store)
    try:
        dest = ctx.destination(res.destination)
        load = _load_of(ctx, res, evolve=False)
        existing = dest.table_schema(load.table)
        assert load.schema is not None
        json_columns = [c for c, t in res.columns.items() if sch.is_json_type(t)]
        return use(Incoming(dest, load.table, _without_own(load.schema), None if existing is None else _without_own(existing), json_columns))
    finally:
        ctx.close()


def _without_own(schema: pa.Schema) -> pa.Schema:
    import pyarrow as pa

    return pa.schema([f for f in schema if not f.name.startswith(OWN_PREFIX)])


def infer(config: Path, resource: str, target: str | None = None) -> list[tuple[str, str]]:
    """(column, the destination's SQL type name) for each column ``resource`` would load."""
    from conduit.schema import without_views

    def names(inc: Incoming) -> list[tuple[str, str]]:
        return [(f.name, inc.destination.sql_type(without_views(f.type), f.name in inc.json_columns)) for f in inc.schema]

    return _inspect(config, resource, target, names)


@dataclass(frozen=True)
class Comparison:
    """The differences between a resource's source schema and its destination table."""

    table: str
    exists: bool
    changes: list[Change]
    ddl: list[str | None]
    """The destination's statement applying each change, where there is one."""

    @property
    def equal(self) -> bool:
        """Whether the table exists and takes the rows as they are."""
        return self.exists and not self.changes

    def lines(self) -> list[str]:
        """One line per difference (``+ email text``, ``- born date (...)``, ``~ id integer -> bigint``)."""
        if not self.exists:
            return [f"{self.table} does not exist yet; it will be created"]
        return [c.describe() for c in self.changes]

    def as_json(self) -> dict[str, Any]:
        """The comparison for programs: table, whether it exists, each change with its DDL."""
        from conduit.schema import spec_name

        def typ(t: pa.DataType | None) -> str | None:
            return None if t is None else spec_name(t)

        changes = [{"change": c.kind, "column": c.column, "source_type": typ(c.source_type), "target_type": typ(c.target_type), "ddl": d} for c, d in zip(self.changes, self.ddl, strict=True)]
        return {"table": self.table, "exists": self.exists, "changes": changes}


def compare(config: Path, resource: str, target: str | None = None) -> Comparison:
    """How the schema ``resource`` would load differs from its destination table, whatever its ``schema_evolution`` mode."""
    from conduit import schema as sch

    def differences(inc: Incoming) -> Comparison:
        if inc.existing is None:
            return Comparison(inc.table, False, [], [])
        changes = sch.diff(inc.schema, inc.existing, inc.destination.capabilities.max_decimal_precision)
        return Comparison(inc.table, True, changes, [inc.destination.ddl_for(inc.table, c) for c in changes])

    return _inspect(config, resource, target, differences)
