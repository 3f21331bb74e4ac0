"""The fast path of CSV and NDJSON files: read in small blocks cut at record boundaries, each parsed by Polars.

Polars' streaming scans read far ahead of their consumer (the NDJSON scan nearly the
whole file), so :func:`csv` and :func:`ndjson` parse blocks of :data:`BLOCK` bytes one
after another (NDJSON two at a time), holding memory bounded whatever the file size. A block ends at its
last newline outside quotes (quote parity, as RFC 4180 doubles a quote inside a quoted
field; JSON lines hold no raw newline), so a quoted CSV field may span lines and blocks.
The blocks' frames are gathered into batches of ``batch_size`` rows without copying.

Rows are numbered as the scans number them (CSV: data records, NDJSON: non-blank lines,
1-based). CSV columns are text and :func:`conduit.connectors.files.csv_tolerant.finish` marks the
rows to re-check. A block Polars cannot parse raises; the caller goes on through the
tolerant path.

Examples
--------
>>> import io
>>> from conduit.connectors.files.options import CsvOptions
>>> data = b'a,b\\n1,"x\\ny"\\n2,z\\n'
>>> [df.rows() for df in csv(io.BytesIO(data), CsvOptions(), ["a", "b"], skip=0, batch_size=10)]
[[(1, '1', 'x\\ny', False), (2, '2', 'z', False)]]
>>> [df.rows() for df in ndjson(io.BytesIO(b'{"a": 1}\\n\\n{"a": 2}\\n'), pl.Schema({"a": pl.Int64}), skip=1, batch_size=10)]
[[(2, 2)]]
>>> boundary(b'1,"x\\ny"\\n2,"z', '"')  # the newline inside the open quote is no boundary
7
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
import polars as pl

from conduit.connectors.base import ROW_NUMBER
from conduit.connectors.files import limits

if TYPE_CHECKING:
    from conduit.connectors.files.options import CsvOptions

BLOCK = 2 << 20  # bytes per block: smaller holds less memory (4 MiB held ~20 MiB more at peak), larger parses a little faster


def csv(fh: BinaryIO, opts: CsvOptions, names: list[str], skip: int, batch_size: int, source: str = "<stream>") -> Iterator[pl.DataFrame]:
    """Frames of at most ``batch_size`` records numbered above ``skip``: row number, text columns, recheck mark."""
    from conduit.connectors.files.csv_tolerant import finish

    schema = dict.fromkeys(names, pl.String)

    def parse(block: bytes, first: bool) -> pl.DataFrame:
        return pl.read_csv(
            block,
            has_header=opts.header and first,
            skip_rows=opts.skip_rows if first else 0,
            schema=schema,
            separator=opts.delimiter,
            quote_char=opts.quote,
            comment_prefix=opts.comment,
            empty_string_is_null=False,
            raise_if_empty=False,
        )

    for df in _batched(parse, _blocks(fh, opts.quote, source), skip, batch_size, at_once=1):  # Polars' CSV reader keeps both cores busy
        yield finish(df, names, opts.null_values)


def ndjson(fh: BinaryIO, schema: pl.Schema, skip: int, batch_size: int, source: str = "<stream>") -> Iterator[pl.DataFrame]:
    """Frames of at most ``batch_size`` rows numbered above ``skip`` (blank lines are not rows), typed by ``schema``."""

    def parse(block: bytes, first: bool) -> pl.DataFrame:
        return pl.read_ndjson(block, schema=schema)

    yield from _batched(parse, _blocks(fh, None, source), skip, batch_size, at_once=2)  # one read_ndjson keeps ~1.3 cores busy


def _batched(parse: Callable[[bytes, bool], pl.DataFrame], blocks: Iterator[bytes], skip: int, batch_size: int, at_once: int) -> Iterator[pl.DataFrame]:
    """The blocks parsed (``parse(block, first)``, ``at_once`` at a time) and their rows numbered; batches of those above ``skip``."""
    done = 0  # rows parsed so far
    pending: list[pl.DataFrame] = []
    held = 0
    for parsed in _parallel(parse, blocks, at_once):
        df = parsed.with_row_index(ROW_NUMBER, offset=done + 1)
        done += df.height
        if done <= skip:
            continue
        if done - df.height < skip:
            df = df.slice(skip - (done - df.height))
        pending.append(df)
        held += df.height
        while held >= batch_size:
            joined = pl.concat(pending, rechunk=False)
            yield joined.head(batch_size)
            rest = joined.slice(batch_size)
            pending, held = ([rest], rest.height) if rest.height else ([], 0)
    if held:
        yield pl.concat(pending, rechunk=False)


def _parallel(parse: Callable[[bytes, bool], pl.DataFrame], blocks: Iterator[bytes], at_once: int) -> Iterator[pl.DataFrame]:
    """``parse`` of each block, in order, ``at_once`` blocks at a time (Polars releases the GIL while it parses)."""
    from collections import deque
    from concurrent.futures import Future, ThreadPoolExecutor

    if at_once == 1:
        for i, block in enumerate(blocks):
            yield parse(block, i == 0)
        return
    with ThreadPoolExecutor(at_once, thread_name_prefix="conduit-parse") as pool:
        parsing: deque[Future[pl.DataFrame]] = deque()
        for i, block in enumerate(blocks):
            parsing.append(pool.submit(parse, block, i == 0))
            if len(parsing) >= at_once:
                yield parsing.popleft().result()
        while parsing:
            yield parsing.popleft().result()


def _blocks(fh: BinaryIO, quote: str | None, source: str) -> Iterator[bytes]:
    """The stream in pieces of about :data:`BLOCK` bytes that end at a record boundary.

    Each block is copied once (the previous block's unfinished record joined in front).
    """
    rest = b""
    lines = 0  # newlines in the blocks yielded so far
    while block := fh.read(BLOCK):
        cut = boundary(block, quote, odd=_count(rest, quote.encode()) % 2 if quote else 0)
        if cut < 0:  # no record ends in this block: read on
            rest += block
            if len(rest) > limits.MAX_LINE_BYTES:
                raise limits.line_too_long(source, lines + 1)
            continue
        out = b"".join((rest, memoryview(block)[: cut + 1]))
        lines += _count(out, b"\n")
        yield out
        rest = block[cut + 1 :]
    if rest:
        yield rest


def boundary(data: bytes, quote: str | None, odd: int = 0) -> int:
    """The index of the last newline of ``data`` outside quotes (``odd``: a quote is open at its start), or -1."""
    at = data.rfind(b"\n")
    if quote is None:
        return at
    q = quote.encode()
    odd ^= _count(data, q) % 2  # quotes open at the end
    end = len(data)
    while at >= 0:
        odd ^= _count(data, q, at, end) % 2  # now: open at ``at``
        if not odd:
            return at
        end, at = at, data.rfind(b"\n", 0, at)
    return -1


def _count(data: bytes, q: bytes, start: int = 0, end: int | None = None) -> int:
    """``data.count(q, start, end)``, through ``find`` and numpy, which scan a block faster than ``bytes.count``."""
    end = len(data) if end is None else end
    if data.find(q, start, end) < 0:
        return 0
    if len(q) != 1:
        return data.count(q, start, end)
    return int(np.count_nonzero(np.frombuffer(data, np.uint8, end - start, start) == q[0]))
