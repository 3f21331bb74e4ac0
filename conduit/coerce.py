"""Cast batches to the target types; a value that does not cast makes a bad row.

:class:`Coercer` holds one cast expression per column whose type changes. Applied to
a batch it returns the typed frame and a boolean mask per column saying where a
non-null input became null (a failed cast). Reasons are rendered only for the rows
that failed, so the good path costs one vectorized cast per column.

Examples
--------
>>> import polars as pl
>>> c = Coercer({"n": pl.Int64(), "d": pl.Date()})
>>> typed, bad = c.apply(pl.DataFrame({"n": ["1", "abc", ""], "d": ["2024-01-02", "2024-01-03", "2024-13-45"]}))
>>> typed["n"].to_list(), bad.to_list()
([1, None, None], [False, True, True])
>>> c.reasons(pl.DataFrame({"n": ["abc"], "d": ["2024-01-02"]}))["reason"].to_list()
["column n: 'abc' is not bigint"]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    import pyarrow as pa

_TRUE = ["true", "t", "yes", "y", "1"]
_FALSE = ["false", "f", "no", "n", "0"]
_TS_FORMATS = ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%d"]
_TSTZ_FORMATS = ["%Y-%m-%d %H:%M:%S%.f%z", "%Y-%m-%d %H:%M%z", *_TS_FORMATS]
# Dates and times parse with ``cache=False``: Polars' cache of parsed strings (an LRU)
# costs more than it saves on columns with many distinct values.


def type_name(dtype: pl.DataType) -> str:
    """The Conduit type name of a Polars dtype (``bigint``, ``double``...), for messages."""
    names: dict[type, str] = {pl.Int16: "smallint", pl.Int32: "integer", pl.Int64: "bigint", pl.Float32: "real", pl.Float64: "double"}
    names |= {pl.Boolean: "boolean", pl.String: "text", pl.Date: "date", pl.Time: "time", pl.Binary: "binary"}
    if isinstance(dtype, pl.Decimal):
        return f"decimal({dtype.precision},{dtype.scale})"
    if isinstance(dtype, pl.Datetime):
        return "timestamptz" if dtype.time_zone else "timestamp"
    return names.get(type(dtype), str(dtype))


def cast_expr(name: str, source: pl.DataType, target: pl.DataType) -> pl.Expr:
    """The expression that casts column ``name`` from ``source`` to ``target`` (nulls on failure)."""
    col = pl.col(name)
    if source != pl.String:
        return col.cast(target, strict=False)
    text = col.str.strip_chars()
    text = pl.when(text == "").then(None).otherwise(text)
    if target == pl.Boolean:
        low = text.str.to_lowercase()
        return pl.when(low.is_in(_TRUE)).then(True).when(low.is_in(_FALSE)).then(False).otherwise(None)
    if target == pl.Date:
        return text.str.to_date("%Y-%m-%d", strict=False, cache=False)
    if target == pl.Time:
        return pl.coalesce(text.str.to_time("%H:%M:%S%.f", strict=False, cache=False), text.str.to_time("%H:%M", strict=False, cache=False))
    if isinstance(target, pl.Datetime):
        norm = text.str.replace("T", " ", literal=True).str.replace(r"Z$", "+00:00")
        if target.time_zone:
            parsed = [norm.str.to_datetime(f, time_unit="us", time_zone="UTC", strict=False, cache=False) for f in _TSTZ_FORMATS]
        else:
            parsed = [norm.str.to_datetime(f, time_unit="us", strict=False, cache=False) for f in _TS_FORMATS]
        return pl.coalesce(parsed).cast(target)
    if isinstance(target, pl.Decimal):  # more digits than the scale holds is a bad value, not a rounding
        return pl.when(text.str.contains(_excess_digits(target))).then(None).otherwise(text.cast(target, strict=False))
    return text.cast(target, strict=False)


def _excess_digits(target: pl.Decimal) -> str:
    """A regex matching a non-zero fraction digit beyond ``target``'s scale ('1.234' for scale 2)."""
    return rf"\.\d{{{target.scale or 0}}}\d*[1-9]"


def _maybe_excess(col: pl.Expr, target: pl.Decimal) -> pl.Expr:
    """True where more bytes than ``target``'s scale follow the first '.': wherever :func:`_excess_digits` matches, and more.

    A byte-length test (cheaper than the regex): such a value sends its batch to :func:`cast_expr`.

    >>> s = pl.Series(["1.23", "1.234", "1.230", "12", None])
    >>> s.to_frame("v").select(_maybe_excess(pl.col("v"), pl.Decimal(15, 2))).to_series().to_list()
    [False, True, True, None, None]
    """
    return col.str.len_bytes().cast(pl.Int64) - col.str.find(".", literal=True) > (target.scale or 0) + 1


_ARROW_CSV: dict[type, str] = {pl.Int8: "int8", pl.Int16: "int16", pl.Int32: "int32", pl.Int64: "int64", pl.UInt8: "uint8", pl.UInt16: "uint16", pl.UInt32: "uint32", pl.UInt64: "uint64", pl.Float64: "float64", pl.Date: "date32"}


def arrow_csv_type(target: pl.DataType) -> pa.DataType | None:
    """The Arrow type whose CSV converter reads text exactly as :func:`cast_expr` casts it to ``target``, or None.

    For these targets Arrow's converter (``pyarrow.csv``, with ``""`` as its only null
    value) accepts a subset of the strings :func:`cast_expr` accepts, gives each the
    same value, and raises on any other: integers, doubles, ``YYYY-MM-DD`` dates and
    decimals, where it refuses excess fraction digits instead of rounding them. A CSV
    reader may so parse such a column itself, and read the text and cast it wherever
    Arrow raises (``tests/unit/test_fast_path.py`` holds both to the same values). Not
    here: booleans, times and timestamps (:func:`cast_expr` accepts other spellings),
    ``real`` (a parse to float32 may round differently than one through float64).

    >>> arrow_csv_type(pl.Decimal(15, 2)), arrow_csv_type(pl.Boolean())
    (Decimal128Type(decimal128(15, 2)), None)
    """
    import pyarrow as pa

    if (name := _ARROW_CSV.get(type(target))) is not None:
        return getattr(pa, name)()
    if isinstance(target, pl.Decimal) and target.precision is not None and target.precision <= 38:
        return pa.decimal128(target.precision, target.scale or 0)
    return None


def _given(name: str, dtype: pl.DataType) -> pl.Expr:
    """Where the input holds a value (not NULL, and for text not blank: blank casts to NULL)."""
    col = pl.col(name)
    return col.is_not_null() & (col.str.strip_chars() != "") if dtype == pl.String else col.is_not_null()


def fast_expr(name: str, source: pl.DataType, target: pl.DataType) -> pl.Expr | None:
    """A strict cast that equals :func:`cast_expr` wherever it succeeds, or None.

    It raises instead of returning nulls, so a batch where it succeeds has no bad
    values in that column and needs no failure mask; where it raises (blanks,
    padding, bad values) the batch falls back to :func:`cast_expr`. Only for targets
    whose :func:`cast_expr` is a single parse of the (stripped, non-empty) text.
    """
    col = pl.col(name)
    if source != pl.String:
        return col.cast(target, strict=True)
    if target == pl.Date:
        return col.str.to_date("%Y-%m-%d", strict=True, cache=False)
    if isinstance(target, pl.Decimal):  # a value that may have excess digits becomes unparsable, so the strict cast raises
        return pl.when(_maybe_excess(col, target)).then(pl.lit("excess digits")).otherwise(col).cast(target, strict=True)
    if target.is_integer() or target.is_float():
        return col.cast(target, strict=True)
    return None


@dataclass
class Coercer:
    """Casts for one resource: ``targets`` maps column -> dtype (others pass through)."""

    targets: dict[str, pl.DataType]
    schema: dict[str, pl.DataType] = field(default_factory=dict)

    def output_schema(self, schema: pl.Schema) -> pl.Schema:
        """The schema after casting a frame of ``schema``."""
        return pl.Schema({n: self.targets.get(n, t) for n, t in schema.items()})

    def casts(self, schema: pl.Schema) -> dict[str, pl.Expr]:
        """The cast expression of every column of ``schema`` whose type is not its target's."""
        return {n: cast_expr(n, schema[n], t) for n, t in self.targets.items() if n in schema and schema[n] != t}

    def apply(self, df: pl.DataFrame) -> tuple[pl.DataFrame, pl.Series]:
        """(typed frame, bad-row mask); the mask is True where any cast failed.

        Columns are first cast strictly (:func:`fast_expr`, no mask needed); the
        columns where that raises are cast with :func:`cast_expr` and masked.
        """
        casts = self.casts(df.schema)
        fast = {n: e for n, e in ((n, fast_expr(n, df.schema[n], self.targets[n])) for n in casts) if e is not None}
        if fast:
            try:
                df = df.with_columns(*[e.alias(n) for n, e in fast.items()])
                casts = {n: e for n, e in casts.items() if n not in fast}
            except pl.exceptions.PolarsError:
                df, casts = self._fast_each(df, fast, casts)
        if not casts:
            return df, pl.repeat(False, df.height, dtype=pl.Boolean, eager=True).alias("bad")
        fails = [(_given(n, df.schema[n]) & expr.is_null()).alias(f"_fail_{n}") for n, expr in casts.items()]
        out = df.with_columns(*[e.alias(n) for n, e in casts.items()], pl.any_horizontal(fails).alias("_conduit_bad"))
        return out.drop("_conduit_bad"), out.get_column("_conduit_bad").alias("bad")

    @staticmethod
    def _fast_each(df: pl.DataFrame, fast: dict[str, pl.Expr], casts: dict[str, pl.Expr]) -> tuple[pl.DataFrame, dict[str, pl.Expr]]:
        """Strict casts one column at a time; returns the frame and the casts still to do."""
        done: list[pl.Series] = []
        for n, expr in fast.items():
            try:
                done.append(df.select(expr.alias(n)).to_series())
            except pl.exceptions.PolarsError:
                continue
        names = {s.name for s in done}
        return df.with_columns(done), {n: e for n, e in casts.items() if n not in names}

    def reasons(self, bad: pl.DataFrame) -> pl.DataFrame:
        """For rows that failed: ``column`` (first failing) and ``reason`` text."""
        bad = bad.rechunk()  # Polars 2.1 panics ('i < self.len()') formatting some multi-chunk text columns filtered from a concatenation; these are the few bad rows
        casts = self.casts(bad.schema)
        whens_col: list[pl.Expr] = []
        whens_reason: list[pl.Expr] = []
        for n, expr in casts.items():
            failed = _given(n, bad.schema[n]) & expr.is_null()
            whens_col.append(pl.when(failed).then(pl.lit(n)))
            value = pl.col(n).cast(pl.String).str.slice(0, 200)
            whens_reason.append(pl.when(failed).then(pl.format("column {}: '{}' is not {}", pl.lit(n), value, pl.lit(type_name(self.targets[n])))))
        if not casts:
            return bad.select(pl.lit(None, pl.String).alias("column"), pl.lit(None, pl.String).alias("reason"))
        return bad.select(pl.coalesce(whens_col).alias("column"), pl.coalesce(whens_reason).alias("reason"))
