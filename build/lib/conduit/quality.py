"""Quality checks (``quality_checks`` in ingest.yml) as vectorized Polars expressions.

A check is a boolean expression that is true where a row passes (NULL passes, as in a
SQL ``CHECK`` constraint, except for ``not_null``). Built-ins: ``not_null``,
``unique`` (over the whole resource run, see :mod:`conduit.unique_keys`), ``regex``,
``range``, ``enum`` and ``expression`` (SQL, via ``pl.sql_expr``). Custom checks are
functions returning a ``pl.Expr``, registered with :func:`register` in a ``checks.py``
beside ingest.yml or through the entry point group ``conduit.checks``.

:func:`validate` rejects unknown checks, missing or stray parameters and
non-vectorizable custom checks at plan time (exit 2); :class:`Checks` evaluates a
resource's checks over each batch in one ``select`` and enforces the dead-letter limits.

Examples
--------
>>> import polars as pl
>>> from conduit.config import ResourceConfig
>>> res = ResourceConfig.model_validate({"name": "t", "source": "s", "destination": "d", "quality_checks": [
...     {"column": "code", "check": "enum", "values": ["A", "B"], "action": "dlq"},
...     {"column": "id", "check": "unique", "action": "dlq"}]})
>>> check = Checks(res).evaluator()
>>> kept, bad, warned = check(pl.DataFrame({"id": [1, 2, 2], "code": ["A", "C", "B"], "_conduit_row_number": [1, 2, 3]}))
>>> kept["id"].to_list(), bad[0].check.to_list(), bad[0].error.to_list()
([1, 2], ['enum code'], ["code: 'C' is not one of A, B"])
>>> kept, bad, warned = check(pl.DataFrame({"id": [1, 3], "code": ["A", "A"], "_conduit_row_number": [4, 5]}))
>>> kept["id"].to_list(), bad[0].error.to_list()
([3], ['id: duplicate key 1'])
"""

from __future__ import annotations

import importlib.util
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from conduit.errors import ConfigError, QualityCheckFailed

if TYPE_CHECKING:
    import numpy as np

    from conduit.config import QualityCheck, ResourceConfig
    from conduit.project import Project
    from conduit.results import ResourceResult
    from conduit.transform import Bad
    from conduit.unique_keys import UniqueKeys

BUILTIN_CHECKS = ("not_null", "unique", "regex", "range", "enum", "expression")
ROW_NUMBER = "_conduit_row_number"
# which keys each built-in needs (any one of a tuple) and which it accepts
_NEEDS: dict[str, list[tuple[str, ...]]] = {
    "not_null": [("column",)],
    "unique": [("column",)],
    "regex": [("column",), ("pattern",)],
    "range": [("column",), ("min_value", "max_value")],
    "enum": [("column",), ("values",)],
    "expression": [("expression",)],
}
_PARAM_KEYS = ("pattern", "min_value", "max_value", "values", "expression")

CheckFn = Callable[..., pl.Expr]
_REGISTRY: dict[str, CheckFn] = {}
_LOADED: set[str] = set()


def register(name: str) -> Callable[[CheckFn], CheckFn]:
    """Register a custom check: ``fn(column, **params) -> pl.Expr`` (true where a row passes).

    Examples
    --------
    >>> @register("positive")
    ... def positive(column, **params):
    ...     return pl.col(column) > 0
    >>> "positive" in registered(None)
    True
    """

    def deco(fn: CheckFn) -> CheckFn:
        _REGISTRY[name] = fn
        return fn

    return deco


def registered(project_dir: Path | None) -> dict[str, CheckFn]:
    """Custom checks: entry points ``conduit.checks`` and ``checks.py`` beside ingest.yml."""
    if "entry_points" not in _LOADED:
        _LOADED.add("entry_points")
        from importlib.metadata import entry_points

        for ep in entry_points(group="conduit.checks"):
            _REGISTRY.setdefault(ep.name, ep.load())
    if project_dir is not None and (project_dir / "checks.py").is_file() and str(project_dir) not in _LOADED:
        _LOADED.add(str(project_dir))
        path = project_dir / "checks.py"
        spec = importlib.util.spec_from_file_location(f"conduit_project_checks_{abs(hash(str(path)))}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - any error in user code is a config error
            msg = f"{path}: cannot load custom checks: {type(exc).__name__}: {exc}"
            raise ConfigError(msg) from None
    return _REGISTRY


def label(check: QualityCheck) -> str:
    """The name a check is counted under, e.g. ``regex c_phone``."""
    if check.name:
        return check.name
    if check.check == "expression":
        return f"expression {check.expression}"
    cols = ",".join(check.column) if isinstance(check.column, list) else check.column
    return f"{check.check} {cols}" if cols else check.check


def validate(project: Project, index: int, res: ResourceConfig) -> None:
    """Raise :class:`ConfigError` (key path and line) for anything a check cannot run with."""
    custom = registered(project.dir)
    for j, check in enumerate(res.quality_checks):
        at = ("resources", index, "quality_checks", j)

        def fail(key: str | None, text: str, at: tuple[str | int, ...] = at, j: int = j) -> None:
            where = (*at, key) if key else at
            line = project.lines.get(where, project.lines.get(at, 1))
            path = f"resources[{index}].quality_checks[{j}]" + (f".{key}" if key else "")
            msg = f"{project.path.name}:{line}: {path}: {text}"
            raise ConfigError(msg)

        name = check.check
        if name not in BUILTIN_CHECKS and name not in custom:
            known = ", ".join([*BUILTIN_CHECKS, *sorted(custom)])
            fail("check", f"unknown check {name!r}; known: {known}")
        if name in custom and name not in BUILTIN_CHECKS:
            stray = [k for k in _PARAM_KEYS if getattr(check, k) is not None]
            if stray:
                fail(stray[0], f"custom check {name!r} takes its parameters under params:, not {stray[0]}")
            try:
                expr = custom[name](check.column, **check.params)
            except Exception as exc:  # noqa: BLE001 - user code
                fail("check", f"custom check {name!r} raised {type(exc).__name__}: {exc}")
            if not isinstance(expr, pl.Expr):
                fail("check", f"custom check {name!r} returned {type(expr).__name__}, not a polars expression (pl.Expr); only vectorized checks are accepted")
            continue
        for need in _NEEDS[name]:
            if all(getattr(check, k) is None for k in need):
                fail(None, f"check {name} needs {' or '.join(need)}")
        allowed = {k for group in _NEEDS[name] for k in group}
        for key in ("column", *_PARAM_KEYS, "params"):
            value = getattr(check, key)
            if key not in allowed and value not in (None, {}):
                fail(key, f"check {name} does not take {key}")
        if isinstance(check.column, list) and name != "unique":
            fail("column", f"check {name} takes one column, not a list")
        if name == "regex":
            try:
                pl.Series([""]).str.contains(check.pattern or "")
            except pl.exceptions.PolarsError as exc:
                fail("pattern", f"invalid regular expression: {' '.join(str(exc).split())[:200]}")
        if name == "expression":
            try:
                pl.sql_expr(check.expression)  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - the SQL parser's errors vary
                fail("expression", f"invalid SQL expression: {' '.join(str(exc).split())[:200]}")
        if name == "enum" and not check.values:
            fail("values", "enum needs a non-empty list of values")


@dataclass
class _Bound:
    """One non-unique check bound to a schema: the failing-row expression and its reason."""

    label: str
    action: str
    bad: pl.Expr
    reason: pl.Expr


def _value(col: str) -> pl.Expr:
    return pl.col(col).cast(pl.String).str.slice(0, 200)


def _bind(check: QualityCheck, schema: pl.Schema, custom: dict[str, CheckFn]) -> _Bound:
    """The expression true where a row violates ``check`` (NULL results pass), and why."""
    name, col = check.check, check.column if isinstance(check.column, str) else ""
    text = _value(col) if col else pl.lit("")
    if name == "not_null":
        bad, reason = pl.col(col).is_null(), pl.lit(f"{col}: is null")
    elif name == "regex":
        c = pl.col(col) if schema[col] == pl.String else pl.col(col).cast(pl.String)
        bad = ~c.str.contains(check.pattern)  # type: ignore[arg-type]
        reason = pl.format("{}: '{}' does not match {}", pl.lit(col), text, pl.lit(check.pattern))
    elif name == "range":
        dtype = schema[col]
        conds = []
        if check.min_value is not None:
            conds.append(pl.col(col) < pl.lit(check.min_value).cast(dtype))
        if check.max_value is not None:
            conds.append(pl.col(col) > pl.lit(check.max_value).cast(dtype))
        bad = pl.any_horizontal(conds)
        lo = "-inf" if check.min_value is None else check.min_value
        hi = "inf" if check.max_value is None else check.max_value
        reason = pl.format("{}: {} is outside [{}, {}]", pl.lit(col), text, pl.lit(str(lo)), pl.lit(str(hi)))
    elif name == "enum":
        values = pl.Series(check.values).cast(schema[col], strict=False)
        bad = ~pl.col(col).is_in(values.implode())
        reason = pl.format("{}: '{}' is not one of {}", pl.lit(col), text, pl.lit(", ".join(map(str, check.values or []))))
    elif name == "expression":
        bad = ~pl.sql_expr(check.expression)  # type: ignore[arg-type]
        reason = pl.lit(f"expression is false: {check.expression}")
    else:
        bad = ~custom[name](check.column, **check.params)
        reason = pl.format("{} failed{}", pl.lit(name), pl.format(" on '{}'", text) if col else pl.lit(""))
    return _Bound(label(check), check.action, bad.fill_null(False), reason)


class Checks:
    """The checks of one resource during one run (``unique`` state spans every batch)."""

    def __init__(self, res: ResourceConfig, project: Project | None = None):
        self.res = res
        self.project = project
        self._custom = registered(project.dir if project else None) if res.quality_checks else {}
        self._bound: list[_Bound] | None = None
        self._schema: pl.Schema | None = None
        from conduit.unique_keys import UniqueKeys

        self._unique: list[tuple[QualityCheck, UniqueKeys]] = [(c, UniqueKeys()) for c in res.quality_checks if c.check == "unique"]
        self._log: deque[list[np.ndarray]] = deque()  # new unique keys of each evaluated batch, oldest first
        self._chunk: list[list[np.ndarray]] = []

    def evaluator(self) -> Callable[[pl.DataFrame], tuple[pl.DataFrame, list[Bad], dict[str, int]]] | None:
        """A batch function (frame -> kept frame, bad rows, warning counts), or None without checks."""
        if not self.res.quality_checks:
            return None
        return self._evaluate

    def step_done(self) -> None:
        """The oldest evaluated batch was consumed: its new keys belong to the current chunk."""
        if self._unique and self._log:
            self._chunk.append(self._log.popleft())

    def chunk_keys(self) -> dict[int, np.ndarray]:
        """New keys of each ``unique`` check over the batches of the chunk just read (then forgotten)."""
        import numpy as np

        out = {j: np.concatenate([step[j] for step in self._chunk]) for j in range(len(self._unique))} if self._chunk else {}
        self._chunk = []
        return out

    def restore(self, keys: dict[int, list[np.ndarray]]) -> None:
        """On resume: put back the keys of chunks an interrupted attempt already staged."""
        for j, arrays in keys.items():
            if j < len(self._unique):
                for a in arrays:
                    self._unique[j][1].restore(a)

    def _where(self, check: QualityCheck) -> str:
        j = self.res.quality_checks.index(check)
        if self.project is None:
            return f"{self.res.name}.quality_checks[{j}]"
        i = next(n for n, r in enumerate(self.project.config.resources) if r.name == self.res.name)
        line = self.project.lines.get(("resources", i, "quality_checks", j), 1)
        return f"{self.project.path.name}:{line}: resources[{i}].quality_checks[{j}]"

    def _bind_all(self, schema: pl.Schema) -> list[_Bound]:
        if self._bound is None or schema != self._schema:
            bound = []
            for check in self.res.quality_checks:
                cols = [check.column] if isinstance(check.column, str) else list(check.column or [])
                if check.check == "expression":
                    cols = pl.sql_expr(check.expression).meta.root_names()  # type: ignore[arg-type]
                missing = [c for c in cols if c not in schema]
                if missing:
                    msg = f"{self._where(check)}: column {missing[0]!r} is not in the data; columns: {', '.join(c for c in schema if not c.startswith('_conduit'))}"
                    raise ConfigError(msg)
                if check.check != "unique":
                    bound.append(_bind(check, schema, self._custom))
            self._bound, self._schema = bound, schema
        return self._bound

    def _evaluate(self, df: pl.DataFrame) -> tuple[pl.DataFrame, list[Bad], dict[str, int]]:
        from conduit.transform import Bad

        bound = self._bind_all(df.schema)
        bad_out: list[Bad] = []
        warned: dict[str, int] = {}
        if bound:
            flags = df.select([b.bad.alias(f"_q{i}") for i, b in enumerate(bound)])
            counts = flags.sum().row(0)
            for i, b in enumerate(bound):
                if not counts[i]:
                    continue
                if b.action == "fail":
                    self._fail(b.label, df.filter(flags.get_column(f"_q{i}")).head(1).select(ROW_NUMBER, b.reason))
                elif b.action == "warn":
                    warned[b.label] = warned.get(b.label, 0) + int(counts[i])
            dlq = [i for i, b in enumerate(bound) if b.action == "dlq" and counts[i]]
            if dlq:
                mask = flags.select(pl.any_horizontal([f"_q{i}" for i in dlq])).to_series()
                rows = df.filter(mask)
                why = rows.with_columns(flags.filter(mask)).select(
                    pl.coalesce([pl.when(pl.col(f"_q{i}")).then(pl.lit(bound[i].label)) for i in dlq]).alias("check"),
                    pl.coalesce([pl.when(pl.col(f"_q{i}")).then(bound[i].reason) for i in dlq]).alias("error"),
                )
                bad_out.append(Bad(rows, why.get_column("check"), why.get_column("error")))
                df = df.filter(~mask)
        if self._unique:
            import numpy as np

            for check, seen in self._unique:
                df = self._check_unique(check, seen, df, bad_out, warned)
            self._log.append([np.concatenate(seen.added) if seen.added else np.zeros(0, np.uint64) for _, seen in self._unique])
            for _, seen in self._unique:
                seen.added.clear()
        return df, bad_out, warned

    def _check_unique(self, check: QualityCheck, seen: UniqueKeys, df: pl.DataFrame, bad_out: list[Bad], warned: dict[str, int]) -> pl.DataFrame:
        from conduit.transform import Bad

        cols = [check.column] if isinstance(check.column, str) else list(check.column or [])
        dup = seen.add(df, cols)
        if dup is None:
            return df
        name = label(check)
        n = int(dup.sum())
        key = pl.format("{}", pl.col(cols[0])) if len(cols) == 1 else pl.format("(" + ", ".join(["{}"] * len(cols)) + ")", *cols)
        reason = pl.format("{}: duplicate key {}", pl.lit(",".join(cols)), key)
        if check.action == "fail":
            self._fail(name, df.filter(dup).head(1).select(ROW_NUMBER, reason))
        if check.action == "warn":
            warned[name] = warned.get(name, 0) + n
            return df
        rows = df.filter(dup)
        bad_out.append(Bad(rows, name, rows.select(reason).to_series()))
        return df.filter(~dup)

    def _fail(self, name: str, first: pl.DataFrame) -> None:
        row, reason = first.row(0)
        msg = f"{self.res.name}: check {name} failed at row {row}: {reason} (action fail); nothing published"
        raise QualityCheckFailed(msg)

    def enforce_limits(self, result: ResourceResult, final: bool = False) -> None:
        """Fail the resource once ``max_dlq_rows`` / ``max_dlq_fraction`` is passed."""
        res = self.res
        if res.max_dlq_rows is not None and result.rows_dlq > res.max_dlq_rows:
            msg = f"{res.name}: {result.rows_dlq:,} rows dead-lettered, more than max_dlq_rows={res.max_dlq_rows:,}; nothing published"
            raise QualityCheckFailed(msg)
        if final and res.max_dlq_fraction is not None and result.rows_read and result.rows_dlq / result.rows_read > res.max_dlq_fraction:
            msg = f"{res.name}: {result.rows_dlq / result.rows_read:.2%} of rows dead-lettered, more than max_dlq_fraction={res.max_dlq_fraction}; nothing published"
            raise QualityCheckFailed(msg)
