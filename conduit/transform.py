"""The batch transform: cast and check one batch, split it into good rows and bad rows.

:class:`Transform` is what happens to every batch of a resource (casts, checks,
dropped columns, the merge order column); :func:`make_transform` builds it from the
declared columns, CSV type inference and the destination's table. Everything works on
whole batches with Polars expressions; no row is ever a Python object.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl
import pyarrow as pa

from conduit import schema as sch
from conduit.coerce import Coercer
from conduit.config import ResourceConfig
from conduit.connectors.base import ERROR, RAW, RECHECK, ROW_NUMBER, SEQ, Destination, Load, Part, Source
from conduit.errors import NotAColumn
from conduit.schema import same_type

PART_SHIFT = 40  # _conduit_seq = part index << 40 | row number: stable across resumes


@dataclass
class Bad:
    """Rows removed from a batch, with why."""

    rows: pl.DataFrame
    check: pl.Series | str
    error: pl.Series

    def counts(self) -> dict[str, int]:
        """Rows per check name (a cast failure per column: ``cast <column>``)."""
        if isinstance(self.check, str):
            if self.check == "cast":
                cols = self.error.str.extract(r"^column (.+?):", 1).value_counts()
                return {f"cast {c}": int(n) for c, n in cols.iter_rows()}
            return {self.check: self.rows.height}
        return {str(c): int(n) for c, n in self.check.value_counts().iter_rows()}


@dataclass
class Step:
    """One transformed batch: good rows as Arrow, bad rows, and where in the part it ends."""

    good: pa.RecordBatch | None
    bad: list[Bad]
    rows_read: int
    rows_read_end: int
    warned: dict[str, int] = field(default_factory=dict)
    filtered: int = 0


Check = Callable[[pl.DataFrame], tuple[pl.DataFrame, list[Bad], dict[str, int]]]


@dataclass
class Transform:
    """What happens to every batch of a resource: casts, checks, dropped columns, merge order."""

    coercer: Coercer
    schema: pa.Schema
    checks: Check | None = None
    drop: list[str] = field(default_factory=list)
    add_seq: bool = False
    row_filter: Callable[[pl.DataFrame], pl.Series] | None = None
    views: bool = False  # emit string_view / binary_view (no copy out of Polars)
    nul_columns: list[str] = field(default_factory=list)  # text columns the destination cannot hold a NUL in
    destination: str = ""
    _direct: dict[pa.Schema, bool] = field(default_factory=dict, init=False, repr=False)  # direct() per schema (a replaced transform starts afresh)

    def direct(self, schema: pa.Schema) -> bool:
        """Whether batches of ``schema`` pass unchanged (no cast, check, filter or column to add).

        Such batches skip Polars: only their string layout (or timestamp zone name) is conformed to :attr:`schema`.
        """
        if schema not in self._direct:
            self._direct[schema] = self._is_direct(schema)
        return self._direct[schema]

    def _is_direct(self, schema: pa.Schema) -> bool:
        if self.checks is not None or self.row_filter is not None or self.add_seq or self.drop:
            return False
        if [f.name for f in schema] != self.schema.names or self.coercer.casts(pl.DataFrame(schema.empty_table()).schema):
            return False
        return all(same_type(a.type, b.type) for a, b in zip(schema, self.schema, strict=True))

    def __call__(self, df: pl.DataFrame, part_index: int) -> tuple[pa.RecordBatch, list[Bad], dict[str, int], int]:
        """(good Arrow batch, bad rows, warning counts, rows filtered out by incremental state)."""
        filtered = 0
        bad: list[Bad] = []
        if ERROR in df.columns:
            df, bad = _split_unparsed(df)
        typed, bad_mask = self.coercer.apply(df)
        if self.row_filter is not None:  # on typed values: 10 > 9 even when the file says '10'
            keep = self.row_filter(typed)
            filtered = df.height - int(keep.sum())
            if filtered:
                df, typed, bad_mask = df.filter(keep), typed.filter(keep), bad_mask.filter(keep)
        if bad_mask.any():
            raw = df.filter(bad_mask)
            why = self.coercer.reasons(raw)
            bad.append(Bad(raw, "cast", why.get_column("reason")))
            typed = typed.filter(~bad_mask)
        early = self.checks is not None  # checks must not see the rows with a NUL; else the exported batch is scanned (cheaper)
        if self.nul_columns and early:
            typed, nul = self._split_nul(typed)
            bad += nul
        warned: dict[str, int] = {}
        if self.checks is not None:
            typed, more_bad, warned = self.checks(typed)
            bad += more_bad
        good = self._export(typed, part_index)
        if self.nul_columns and not early and self.has_nul(good):
            typed, nul = self._split_nul(typed)
            bad += nul
            good = self._export(typed, part_index)
        return good, bad, warned, filtered

    def _export(self, typed: pl.DataFrame, part_index: int) -> pa.RecordBatch:
        """The good rows as one Arrow batch of :attr:`schema` (merge order column added, dropped columns left out)."""
        if self.add_seq:
            typed = typed.with_columns((pl.lit(part_index << PART_SHIFT, pl.Int64) + pl.col(ROW_NUMBER)).alias(SEQ))
        drop = [c for c in (ROW_NUMBER, *self.drop) if c in typed.columns]
        table = typed.drop(drop).to_arrow(compat_level=compat_level(self.views))
        if table.schema != self.schema:
            table = conform(table, self.schema)
        batch = table.combine_chunks().to_batches()
        return batch[0] if batch else pa.RecordBatch.from_pylist([], schema=self.schema)

    def _split_nul(self, typed: pl.DataFrame) -> tuple[pl.DataFrame, list[Bad]]:
        """Rows with a NUL in a text column the destination cannot store, as bad rows naming the first such column."""
        found = [pl.col(c).str.contains("\x00", literal=True).fill_null(False) for c in self.nul_columns if c in typed.columns]
        mask = typed.select(pl.any_horizontal(found).alias("nul")).get_column("nul") if found else None
        if mask is None or not mask.any():
            return typed, []
        rows = typed.filter(mask)
        reason = pl.coalesce(pl.when(pl.col(c).str.contains("\x00", literal=True)).then(pl.lit(f"NUL byte in column {c} (destination {self.destination} cannot store it in text)")) for c in self.nul_columns if c in typed.columns)
        return typed.filter(~mask), [Bad(rows, "nul", rows.select(reason.alias("reason")).get_column("reason"))]

    def has_nul(self, batch: pa.RecordBatch) -> bool:
        """Whether a text column of ``batch`` that must not hold a NUL holds one (one scan of each column's bytes)."""
        from conduit.text_nul import holds_nul

        names = [n for n in self.nul_columns if n in batch.schema.names and sch.is_text(batch.schema.field(n).type)]
        return any(holds_nul(batch.column(n)) for n in names)


def compat_level(views: bool) -> pl.CompatLevel | None:
    """Polars' Arrow export level: the newest keeps string_view (no copy), None gives large_string."""
    return pl.CompatLevel.newest() if views else None


def _split_unparsed(df: pl.DataFrame) -> tuple[pl.DataFrame, list[Bad]]:
    """Rows a source marked unparsable (``_conduit_error``) become bad rows with their raw text."""
    mask = df.get_column(ERROR).is_not_null()
    extra = [c for c in (ERROR, RAW) if c in df.columns]
    if not mask.any():
        return df.drop(extra), []
    rows = df.filter(mask)
    bad = Bad(rows.drop(ERROR).select(RAW, pl.exclude(RAW)) if RAW in rows.columns else rows.drop(ERROR), "parse", rows.get_column(ERROR))
    return df.filter(~mask).drop(extra), [bad]


def sample(part: Part, rows: int) -> pl.DataFrame:
    """The first ``rows`` parsable rows of a lazily scanned part (for type inference).

    Read through the part's own block reader when it has one, so the sample holds as
    little memory as the load itself (a scan would buffer an overlong record whole).
    """
    assert isinstance(part.frame, pl.LazyFrame)
    try:
        if part.read is not None:
            first = next(iter(part.read(0, rows, {})), None)  # no types: text, read by Arrow where it reads as Polars does
            if isinstance(first, pa.Table):
                first = pl.DataFrame(first)
            df = first if first is not None else part.frame.clear().collect()
        else:
            df = part.frame.head(rows).collect()
    except pl.exceptions.PolarsError:
        if part.fallback is None:
            raise
        first = next(iter(part.fallback(0, rows)), None)
        df = first if first is not None else part.frame.clear().collect()
    if RECHECK in df.columns:
        df = df.filter(~pl.col(RECHECK)).drop(RECHECK)
    if ERROR in df.columns:
        df = df.filter(pl.col(ERROR).is_null()).drop([c for c in (ERROR, RAW) if c in df.columns])
    return df


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Reorder/cast ``table`` to ``schema`` (missing columns become nulls)."""
    cols = []
    for f in schema:
        if f.name in table.column_names:
            col = table.column(f.name)
            cols.append(col if col.type == f.type else col.cast(f.type))
        else:
            cols.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(cols, schema=schema)


def make_transform(res: ResourceConfig, source: Source, dest: Destination, part: Part, load: Load, checks: Check | None, message: Callable[[str], None], evolve: bool = True) -> Transform:
    """Target types from declared columns, CSV inference (text parts) and the schema mode.

    Sets ``load.schema`` (and ``load.changes``, the schema changes to apply at publish);
    ``checks`` evaluates the quality checks of each batch; ``message`` tells the user
    about schema changes and dropped columns. ``evolve=False`` leaves the schema mode
    out: ``load.schema`` is what the source brings (``conduit schema compare``).
    """
    lazy = isinstance(part.frame, pl.LazyFrame)
    in_schema = part.frame.collect_schema() if lazy else pl.DataFrame(part.frame.schema.empty_table()).schema  # type: ignore[union-attr]
    in_schema = pl.Schema({k: v for k, v in in_schema.items() if k not in (ROW_NUMBER, ERROR, RAW, RECHECK)})
    existing = None if load.write_mode == "replace" else dest.table_schema(load.table)
    targets: dict[str, pl.DataType] = {}
    undeclared = [c for c in in_schema if c != ROW_NUMBER and c not in res.columns]
    if part.text_columns and undeclared:
        sample_rows = getattr(getattr(source, "format_opts", None), "infer_rows", 100_000)
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
    if not lazy:
        arrow_schema = source_metadata(arrow_schema, part.frame.schema, set(res.columns))  # type: ignore[union-attr]
    drop: list[str] = []
    if existing is not None and evolve:
        changes = sch.diff(arrow_schema, existing, dest.capabilities.max_decimal_precision)
        apply, drop = sch.decide(changes, load.options.schema_evolution, load.table, lambda c: dest.ddl_for(load.table, c))
        if apply:
            load.changes = apply
            message(f"{res.name}: schema change applied at publish: " + "; ".join(c.describe() for c in apply))
        if drop:
            message(f"{res.name}: warning: columns not in {load.table} are not loaded: {', '.join(drop)}")
            arrow_schema = _without(arrow_schema, drop)
    _check_keys(res.name, load, arrow_schema.names)
    if load.write_mode == "merge":
        arrow_schema = arrow_schema.append(pa.field(SEQ, pa.int64()))
    load.schema = arrow_schema
    nul = [] if dest.capabilities.text_nul else [f.name for f in arrow_schema if sch.is_text(f.type)]
    return Transform(coercer, arrow_schema, checks=checks, drop=drop, add_seq=load.write_mode == "merge", views=views, nul_columns=nul, destination=dest.name)


def source_metadata(schema: pa.Schema, source: pa.Schema, declared: set[str]) -> pa.Schema:
    """``schema`` with the ``conduit.*`` field metadata of the source's fields (e.g. a PostgreSQL column's type), for columns not declared.

    >>> src = pa.schema([pa.field("u", pa.string(), metadata={"conduit.pg_type": "uuid", "other": "x"})])
    >>> source_metadata(pa.schema([("u", pa.large_string())]), src, set()).field("u").metadata
    {b'conduit.pg_type': b'uuid'}
    """
    fields = []
    for f in schema:
        meta = {k: v for k, v in (source.field(f.name).metadata or {}).items() if k.startswith(b"conduit.")} if f.name in source.names and f.name not in declared else {}
        fields.append(f.with_metadata(meta) if meta else f)
    return pa.schema(fields, schema.metadata)


def _check_keys(resource: str, load: Load, columns: list[str]) -> None:
    """Key columns the load's rows do not have: an error now, before anything is staged."""
    for key, names in (("primary_keys", load.primary_keys), ("partition_by", load.options.partition_by)):
        missing = [n for n in names if n not in columns]
        if missing:
            detail = f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not {'a column' if len(missing) == 1 else 'columns'} of {resource} (columns: {', '.join(columns)})"
            raise NotAColumn(resource, key, detail)


def _without(schema: pa.Schema, names: list[str]) -> pa.Schema:
    """``schema`` without ``names``."""
    for name in names:
        schema = schema.remove(schema.get_field_index(name))
    return schema
