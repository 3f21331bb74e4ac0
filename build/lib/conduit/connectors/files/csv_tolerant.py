"""The tolerant CSV path: malformed records become marked rows, never a failed file.

Polars' CSV reader stops at the first ragged record, unbalanced quote or invalid
byte. When that happens :func:`records` re-reads the file as text blocks, splits
each block into lines and the lines into records by quote parity (all vectorized
Polars expressions), counts fields per record outside quotes, and parses only the
records that have the header's field count. The others come back as rows with
``_conduit_error`` (file line number and reason) and ``_conduit_raw`` (the text), so
the engine dead-letters them. Memory stays bounded by the block size.

:func:`finish` wraps the fast path: rows that may hide a short record (empty last
field) are marked for a re-read through this path, and null tokens are applied.

Examples
--------
>>> import polars as pl
>>> lf = pl.LazyFrame({"a": ["1", "4", "7"], "b": ["2", "", "NULL"], "_conduit_row_number": [1, 2, 3]})
>>> finish(lf, ["a", "b"], ["NULL"]).collect().rows()
[('1', '2', 1, False), ('4', '', 2, True), ('7', None, 3, False)]
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO, TypeVar

import polars as pl

from conduit.connectors.base import ERROR, RAW, RECHECK, ROW_NUMBER

if TYPE_CHECKING:
    from conduit.connectors.files.options import CsvOptions

BLOCK = 8 << 20
MAX_OPEN_LINES = 10_000  # an open quote spanning more lines than this is a broken record


Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)


def finish(lf: Frame, names: list[str], null_values: list[str]) -> Frame:
    """Mark rows whose last field is empty or missing for a re-read; apply null tokens.

    Polars fills missing trailing fields of a short record with empty strings, so such
    a row cannot be told from one with empty trailing values; the tolerant path can.
    """
    last = pl.col(names[-1])
    lf = lf.with_columns((last.is_null() | (last == "")).alias(RECHECK))
    if null_values:
        lf = lf.with_columns(pl.when(pl.col(c).is_in(null_values)).then(None).otherwise(pl.col(c)).alias(c) for c in names)
    return lf


def records(fh: BinaryIO, opts: CsvOptions, names: list[str], after: int, batch_size: int) -> Iterator[pl.DataFrame]:
    """Frames of the records numbered above ``after`` (data records, 1-based), bad ones marked."""
    reader = _Reader(opts, names)
    pending: list[pl.DataFrame] = []
    size = 0
    for frame in reader.frames(fh):
        frame = frame.filter(pl.col(ROW_NUMBER) > after)
        if frame.height == 0:
            continue
        pending.append(frame)
        size += frame.height
        while size >= batch_size:
            df = pl.concat(pending, how="diagonal_relaxed")
            yield _tidy(df.head(batch_size), names, opts)
            rest = df.slice(batch_size)
            pending, size = ([rest], rest.height) if rest.height else ([], 0)
    if pending:
        yield _tidy(pl.concat(pending, how="diagonal_relaxed"), names, opts)


def _tidy(df: pl.DataFrame, names: list[str], opts: CsvOptions) -> pl.DataFrame:
    """Column order of the fast path; null tokens applied to good rows."""
    df = df.select(*names, ROW_NUMBER, ERROR, RAW)
    if opts.null_values:
        df = df.with_columns(pl.when(pl.col(c).is_in(opts.null_values)).then(None).otherwise(pl.col(c)).alias(c) for c in names)
    return df


class _Reader:
    """Splits a byte stream into numbered records, block by block."""

    def __init__(self, opts: CsvOptions, names: list[str]):
        self.opts = opts
        self.names = names
        self.quote = opts.quote
        self.strip = re.compile(f"{re.escape(self.quote)}[^{re.escape(self.quote)}]*{re.escape(self.quote)}") if self.quote else None
        self.line_no = 0  # physical lines consumed
        self.rec_no = 0  # data records numbered so far
        self.skip_lines = opts.skip_rows
        self.header = opts.header

    def frames(self, fh: BinaryIO) -> Iterator[pl.DataFrame]:
        carry = pl.DataFrame(schema={"line": pl.String, "lineno": pl.Int64, "badenc": pl.Boolean})
        rest = b""
        first = True
        while True:
            block = fh.read(BLOCK)
            eof = not block
            data = rest + block
            if not eof:
                cut = data.rfind(b"\n")
                if cut < 0:
                    rest = data
                    continue
                data, rest = data[: cut + 1], data[cut + 1 :]
            else:
                rest = b""
            if first and data.startswith(b"\xef\xbb\xbf"):
                data = data[3:]
            lines = self._lines(data)
            if first:
                lines = lines.slice(self.skip_lines)
                first = False
            lines = pl.concat([carry, lines])
            out, carry = self._records(lines, eof)
            if out is not None and out.height:
                yield out
            if eof:
                return

    def _lines(self, data: bytes) -> pl.DataFrame:
        enc = self.opts.encoding
        try:
            text, badenc = data.decode(enc), False
        except UnicodeDecodeError:
            text, badenc = data.decode(enc, errors="replace"), True
        if text.endswith("\n"):
            text = text[:-1]
        elif not text:
            return pl.DataFrame(schema={"line": pl.String, "lineno": pl.Int64, "badenc": pl.Boolean})
        df = pl.DataFrame({"line": [text]}).select(pl.col("line").str.split("\n")).explode("line")
        n = df.height
        df = df.with_columns(
            pl.int_range(self.line_no + 1, self.line_no + n + 1, dtype=pl.Int64).alias("lineno"),
            (pl.col("line").str.contains("\ufffd", literal=True) if badenc else pl.lit(False)).alias("badenc"),
        )
        self.line_no += n
        if self.opts.comment:
            df = df.filter(~pl.col("line").str.starts_with(self.opts.comment))
        return df

    def _group(self, lines: pl.DataFrame, force: pl.Expr | None) -> pl.DataFrame:
        q = pl.col("line").str.count_matches(self.quote, literal=True) % 2 if self.quote else pl.lit(0, pl.UInt32)
        lines = lines.with_columns(q.cast(pl.Int64).alias("_odd"))
        if force is not None:
            lines = lines.with_columns(pl.when(force).then(0).otherwise(pl.col("_odd")).alias("_odd"))
        open_after = pl.col("_odd").cum_sum() % 2
        start = open_after.shift(1, fill_value=0) == 0
        if force is not None:
            start = start | force
        return lines.with_columns(start.cum_sum().alias("_rec"), open_after.alias("_open"))

    def _records(self, lines: pl.DataFrame, eof: bool) -> tuple[pl.DataFrame | None, pl.DataFrame]:
        empty_carry = lines.clear().select("line", "lineno", "badenc")
        if lines.height == 0:
            return None, empty_carry
        g = self._group(lines, None)
        carry = empty_carry
        if g.get_column("_open")[-1] == 1:  # the last record is still inside quotes
            last = g.get_column("_rec")[-1]
            tail = g.filter(pl.col("_rec") == last)
            if not eof and tail.height <= MAX_OPEN_LINES:
                carry = tail.select("line", "lineno", "badenc")
                g = g.filter(pl.col("_rec") != last)
        if g.height == 0:
            return None, carry
        recs = self._validate(g)
        broken = recs.filter(~pl.col("ok") & (pl.col("nlines") > 1)).get_column("_rec")
        if broken.len():
            lines = g.select("line", "lineno", "badenc", pl.col("_rec").is_in(broken.implode()).alias("_force"))
            g = self._group(lines, pl.col("_force"))
            recs = self._validate(g)
        if self.header:
            recs = recs.slice(1)
            self.header = False
        n = recs.height
        recs = recs.with_columns(pl.int_range(self.rec_no + 1, self.rec_no + n + 1, dtype=pl.Int64).alias(ROW_NUMBER))
        self.rec_no += n
        recs = recs.filter(pl.col("text") != "")  # blank lines: numbered, not rows
        return self._parse(recs), carry

    def _validate(self, g: pl.DataFrame) -> pl.DataFrame:
        n = len(self.names)
        recs = g.group_by("_rec", maintain_order=True).agg(pl.col("line").str.join("\n").str.strip_suffix("\r").alias("text"), pl.col("lineno").first(), pl.len().alias("nlines"), pl.col("badenc").any())
        stripped = pl.col("text").str.replace_all(self.strip.pattern, "") if self.strip else pl.col("text")
        recs = recs.with_columns(stripped.alias("_s"))
        unbalanced = pl.col("_s").str.contains(self.quote, literal=True) if self.quote else pl.lit(False)
        fields = pl.col("_s").str.count_matches(self.opts.delimiter, literal=True) + 1
        reason = (
            pl.when(pl.col("badenc"))
            .then(pl.format("line {}: invalid {} bytes (wrong encoding? set options.encoding)", "lineno", pl.lit(self.opts.encoding)))
            .when(unbalanced)
            .then(pl.format("line {}: unbalanced quote", "lineno"))
            .when((fields != n) & (pl.col("text") != ""))
            .then(pl.format("line {}: expected {} fields, found {}", "lineno", pl.lit(n), fields))
            .otherwise(None)
        )
        return recs.with_columns(reason.alias(ERROR)).with_columns(pl.col(ERROR).is_null().alias("ok")).drop("_s")

    def _parse(self, recs: pl.DataFrame) -> pl.DataFrame:
        good = recs.filter(pl.col("ok"))
        bad = recs.filter(~pl.col("ok")).select(ROW_NUMBER, ERROR, pl.col("text").alias(RAW))
        frames = [bad.with_columns(pl.lit(None, pl.String).alias(c) for c in self.names)]
        if good.height:
            text = good.select(pl.col("text").str.join("\n")).item()
            parsed = pl.read_csv(
                io.BytesIO(text.encode()),
                has_header=False,
                new_columns=self.names,
                schema={c: pl.String for c in self.names},
                separator=self.opts.delimiter,
                quote_char=self.quote,
                empty_string_is_null=False,
                raise_if_empty=False,
            )
            if parsed.height != good.height:
                parsed = pl.DataFrame({c: pl.repeat(None, good.height, dtype=pl.String, eager=True) for c in self.names})
                good = good.with_columns(pl.format("line {}: cannot parse record", "lineno").alias(ERROR))
                frames.append(parsed.with_columns(good.get_column(ROW_NUMBER), good.get_column(ERROR), good.get_column("text").alias(RAW)))
            else:
                frames.append(parsed.with_columns(good.get_column(ROW_NUMBER), pl.lit(None, pl.String).alias(ERROR), pl.lit(None, pl.String).alias(RAW)))
        return pl.concat(frames, how="diagonal_relaxed").sort(ROW_NUMBER).select(*self.names, ROW_NUMBER, ERROR, RAW)
