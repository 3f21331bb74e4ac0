"""The tolerant NDJSON path: a bad line becomes a marked row, never a failed file.

Polars' NDJSON reader stops at the first line that is not JSON or whose value does not
fit the inferred type. When that happens :func:`records` re-reads the file as lines
(``pl.scan_lines``, streamed in batches) and, per batch, with vectorized expressions:

* drops blank lines and numbers the others like the fast reader does (1-based over
  non-blank lines), so a resume position means the same row on either path;
* marks lines that are not one JSON object (``json_path_match('$')`` fails) and lines
  whose scalar values do not fit the column type (the value's text does not cast);
* decodes the rest with the file's schema in one ``str.json_decode``; should polars
  still reject the batch (a case the checks above do not foresee), the batch is halved
  until the offending lines are isolated, which costs a few decode calls per bad line.

Marked rows carry ``_conduit_error`` (line number and reason) and ``_conduit_raw`` (the
line), so the engine dead-letters them. :func:`schema` infers a file's schema from the
valid lines of its sample when the fast reader cannot.

Examples
--------
>>> import polars as pl
>>> lines = pl.DataFrame({"line": ['{"id": 1}', '{oops', '{"id": "x"}', '{"id": 4}'], "_conduit_row_number": [1, 2, 3, 4], "_line": [1, 2, 3, 5]})
>>> parse(lines, pl.Schema({"id": pl.Int64})).rows()
[(1, 1, None, None), (None, 2, 'line 2: not a JSON object', '{oops'), (None, 3, "line 3: id: 'x' is not Int64", '{"id": "x"}'), (4, 4, None, None)]
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator

import polars as pl

from conduit.connectors.base import ERROR, RAW, ROW_NUMBER

LINE = "_line"
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def records(url: str, storage: dict[str, str] | None, file_schema: pl.Schema, after: int, batch_size: int) -> Iterator[pl.DataFrame]:
    """Frames of the rows numbered above ``after``, bad lines marked (memory bounded by the batch)."""
    lines = pl.scan_lines(url, name="line", row_index_name=LINE, row_index_offset=1, storage_options=storage, glob=False)
    numbered = 0
    for batch in lines.collect_batches(chunk_size=batch_size):
        batch = batch.filter(pl.col("line").str.strip_chars() != "")
        batch = batch.with_columns(pl.int_range(numbered + 1, numbered + 1 + batch.height, dtype=pl.Int64).alias(ROW_NUMBER))
        numbered += batch.height
        batch = batch.filter(pl.col(ROW_NUMBER) > after)
        if batch.height:
            yield parse(batch, file_schema)


def parse(batch: pl.DataFrame, file_schema: pl.Schema) -> pl.DataFrame:
    """Decode the ``line`` column of ``batch`` with ``file_schema``; bad lines marked, not raised."""
    text = pl.col("line")
    whole = text.str.json_path_match("$")
    reasons = [pl.when(~text.str.strip_chars_start().str.starts_with("{") | whole.is_null()).then(pl.lit("not a JSON object"))]
    for name, dtype in file_schema.items():
        if not _PLAIN.match(name) or not (dtype.is_numeric() or dtype == pl.Boolean):
            continue
        value = text.str.json_path_match(f"$.{name}")
        fits = value.is_in(["true", "false"]) if dtype == pl.Boolean else value.cast(pl.Float64 if dtype.is_float() else pl.Int64, strict=False).is_not_null()
        reasons.append(pl.when(value.is_not_null() & ~fits).then(pl.format("{}: '{}' is not {}", pl.lit(name), value.str.slice(0, 100), pl.lit(str(dtype)))))
    checked = batch.with_columns(pl.coalesce(reasons).alias(ERROR))
    struct = pl.Struct(file_schema)
    good = checked.get_column(ERROR).is_null()
    more = _reject(checked.filter(good).get_column("line"), checked.filter(good).get_column(LINE), struct)
    if more:
        found = pl.DataFrame({LINE: list(more), "_why": list(more.values())}, schema={LINE: batch.schema[LINE], "_why": pl.String})
        checked = checked.join(found, on=LINE, how="left", maintain_order="left").with_columns(pl.coalesce(ERROR, "_why").alias(ERROR)).drop("_why")
    bad = pl.col(ERROR).is_not_null()
    out = checked.select(
        pl.when(~bad).then(text).str.json_decode(struct).struct.unnest(),
        pl.col(ROW_NUMBER),
        pl.when(bad).then(pl.format("line {}: {}", pl.col(LINE), pl.col(ERROR))).alias(ERROR),
        pl.when(bad).then(text).alias(RAW),
    )
    return out


def _reject(lines: pl.Series, numbers: pl.Series, struct: pl.Struct) -> dict[int, str]:
    """Line number -> reason for the lines ``json_decode`` refuses (halving; empty when all decode)."""
    out: dict[int, str] = {}
    todo = [(0, lines.len())]
    while todo:
        lo, hi = todo.pop()
        try:
            lines.slice(lo, hi - lo).str.json_decode(struct)
        except pl.exceptions.PolarsError as exc:
            if hi - lo == 1:
                out[numbers[lo]] = " ".join(str(exc).split("\n")[0].split()).removeprefix("error deserializing JSON: ")[:300]
            else:
                mid = (lo + hi) // 2
                todo += [(lo, mid), (mid, hi)]
    return out


def schema(url: str, storage: dict[str, str] | None, infer_rows: int) -> pl.Schema:
    """The schema polars infers from the valid JSON-object lines among the first ``infer_rows``."""
    lines = pl.scan_lines(url, name="line", storage_options=storage, glob=False).head(infer_rows).collect()
    valid = lines.filter(pl.col("line").str.strip_chars_start().str.starts_with("{") & pl.col("line").str.json_path_match("$").is_not_null())
    if valid.height == 0:
        return pl.Schema()
    data = valid.get_column("line").str.join("\n").item().encode()
    return pl.read_ndjson(io.BytesIO(data), infer_schema_length=None).schema
