"""The fast path of CSV and NDJSON files: read in small blocks cut at record boundaries, each parsed by Arrow or Polars.

Polars' streaming scans read far ahead of their consumer (the NDJSON scan nearly the
whole file), so :func:`csv` and :func:`ndjson` parse blocks of :data:`BLOCK` bytes, two
at a time (one at a time where Polars reads a CSV file: its reader keeps both cores
busy, where Arrow's takes one), holding memory bounded whatever the file size. A block ends at its
last newline outside quotes (quote parity, as RFC 4180 doubles a quote inside a quoted
field; JSON lines hold no raw newline), so a quoted CSV field may span lines and blocks.
The blocks' frames are gathered into batches of ``batch_size`` rows without copying.

Rows are numbered as the scans number them (CSV: data records, NDJSON: non-blank lines,
1-based). A CSV block comes as an Arrow table (:class:`_ArrowCsv`: typed where the cast
would type alike, else text) or as Polars text, whose records
:func:`conduit.connectors.files.csv_tolerant.finish` marks to re-check. A block Polars cannot parse raises; the caller goes on through the
tolerant path.

Examples
--------
>>> import io
>>> from conduit.connectors.files.options import CsvOptions
>>> data = b'a,b\\n1,"x\\ny"\\n2,z\\n'
>>> [df.rows() for df in csv(io.BytesIO(data), CsvOptions(), ["a", "b"], skip=0, batch_size=10)]
[[(1, '1', 'x\\ny', False), (2, '2', 'z', False)]]
>>> [t.to_pylist() for t in csv(io.BytesIO(data), CsvOptions(), ["a", "b"], skip=0, batch_size=10, types={})]  # read by Arrow: no column typed
[[{'_conduit_row_number': 1, 'a': '1', 'b': 'x\\ny'}, {'_conduit_row_number': 2, 'a': '2', 'b': 'z'}]]
>>> [df.rows() for df in ndjson(io.BytesIO(b'{"a": 1}\\n\\n{"a": 2}\\n'), pl.Schema({"a": pl.Int64}), skip=1, batch_size=10)]
[[(2, 2)]]
>>> boundary(b'1,"x\\ny"\\n2,"z', '"')  # the newline inside the open quote is no boundary
7
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, BinaryIO, NamedTuple, TypeAlias, cast

import numpy as np
import polars as pl
import pyarrow as pa

from conduit.connectors.base import ROW_NUMBER
from conduit.connectors.files import limits

if TYPE_CHECKING:
    from conduit.connectors.files.options import CsvOptions

BLOCK = 2 << 20  # bytes per block: smaller holds less memory (4 MiB held ~20 MiB more at peak), larger parses a little faster


def csv(fh: BinaryIO, opts: CsvOptions, names: list[str], skip: int, batch_size: int, source: str = "<stream>", types: Mapping[str, pl.DataType] | None = None) -> Iterator[Frame]:
    """Frames of at most ``batch_size`` records numbered above ``skip``: row number, text columns, recheck mark.

    With ``types`` (None: Polars reads every block), where the dialect is one Arrow
    reads as Polars does (:meth:`_ArrowCsv.of`), every block is first parsed by Arrow's CSV reader (the first one from its second line,
    when its header is that line), which types the columns of ``types`` (the types the
    columns are cast to) it can exactly as the cast would
    (:func:`conduit.coerce.arrow_csv_type`) and reads the others as text, into Arrow
    tables (row number, columns; no recheck mark: Arrow refuses a record with too few
    fields). A block whose records Arrow reads but whose values do not all type comes
    as text, without a recheck mark; a block Arrow refuses (a ragged record, invalid
    UTF-8, misplaced quotes, an empty line) is read by Polars, its records marked.
    """
    from conduit.connectors.files.csv_tolerant import finish

    schema = dict.fromkeys(names, pl.String)
    typed = _ArrowCsv.of(opts, names, types) if types is not None else None

    def parse(block: bytes, first: bool) -> Frame:
        body = _records(block, opts) if first else block
        if typed is not None and body is not None:
            parsed = typed.parse(body)
            if parsed is not None:
                return parsed
        text = pl.read_csv(
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
        return finish(text, names, opts.null_values)

    yield from _batched(parse, _blocks(fh, opts.quote, source), skip, batch_size, at_once=1 if typed is None else 2)  # Polars' CSV reader keeps both cores busy; Arrow's reads a block on one


def _records(first: bytes, opts: CsvOptions) -> bytes | None:
    """The first block without its header line, where that line is the whole header and nothing else comes before the records; else None (Polars' reader knows the rest)."""
    if opts.skip_rows or (first.startswith(b"\xef\xbb\xbf") and not opts.header):
        return None
    if not opts.header:
        return first
    end = first.find(b"\n")
    if end < 0 or (opts.quote and opts.quote.encode() in first[:end]):
        return None
    return first[end + 1 :]


class _ArrowCsv:
    """Blocks parsed by Arrow's CSV reader, typed where it parses as the cast would; None where it might read otherwise than Polars.

    Only blocks whose quotes are all well placed and that (:func:`scan`)
    hold no lone carriage return (nor, in a one-column file, an empty line) are Arrow's:
    there both readers split records and fields alike (Arrow is lenient with quotes where
    Polars refuses a record, and reads an empty line as a record of one empty field,
    which it refuses itself as too short where there are more columns), and an empty field is the
    text ``""`` or, typed, NULL, as the cast makes a blank. Arrow's integer parser also
    takes hexadecimal (``0x1F``), which the cast refuses, and its decimal converter can
    overflow the precision unchecked: such blocks are not typed (they come as text), nor
    are blocks holding a NUL byte (a typed table holds none, so its text is not scanned
    for one again: ``memchr`` over the block is far cheaper than a scan of each column).
    """

    def __init__(self, opts: CsvOptions, names: list[str], types: dict[str, pa.DataType]):
        import pyarrow.csv as pacsv

        self._read = pacsv.read_csv
        self._read_options = pacsv.ReadOptions(column_names=names, use_threads=False, block_size=limits.MAX_LINE_BYTES + 2 * BLOCK)  # one thread (a block is small: threads cost more CPU than they save), one chunk
        self._parse_options = pacsv.ParseOptions(delimiter=opts.delimiter, quote_char=opts.quote or False, double_quote=True, newlines_in_values=True, ignore_empty_lines=False)
        text = pa.large_string()  # what the Arrow export of Polars' text is: no cast to conform a batch
        column_types = {n: types.get(n, text) for n in names}
        self._convert_options, self._ascii_options = (  # ASCII is UTF-8: no check
            pacsv.ConvertOptions(column_types=column_types, null_values=[""], strings_can_be_null=False, quoted_strings_can_be_null=True, check_utf8=check) for check in (True, False)
        )
        self._text_options = pacsv.ConvertOptions(column_types=dict.fromkeys(names, text), strings_can_be_null=False, check_utf8=True)
        self._quote = opts.quote.encode() if opts.quote else None
        self._delimiter = opts.delimiter.encode()
        self._ints = any(pa.types.is_integer(t) for t in types.values())
        self._one_column = len(names) == 1  # where an empty line is a record to Arrow (with more columns, one too short: refused)
        self._decimals = [n for n, t in types.items() if pa.types.is_decimal(t)]

    @classmethod
    def of(cls, opts: CsvOptions, names: list[str], types: Mapping[str, pl.DataType]) -> _ArrowCsv | None:
        """The parser for ``types`` where the dialect is one Arrow reads as Polars does (no comments, no null tokens), else None.

        Columns Arrow does not type it reads as text (all of them, for ``{}``: how the
        type-inference sample is read; Arrow's buffers go back to the system when freed,
        where Polars' allocator keeps them a while, through the load that follows).
        """
        from conduit.coerce import arrow_csv_type

        if opts.comment is not None or opts.null_values or len(set(names)) != len(names):
            return None
        arrow = {n: t for n in names if n in types and (t := arrow_csv_type(types[n])) is not None}
        return cls(opts, names, arrow)

    def parse(self, block: bytes) -> Frame | None:
        """The block's records: typed (an Arrow table), as text where a value does not type (a Polars frame), or None.

        None where Arrow refuses the records themselves (a record's field count, invalid
        UTF-8) or might read them otherwise than Polars (see the class): Polars' reader
        then reads the block, and marks the records to re-check. A block whose records
        Arrow reads but whose values do not all type (a bad value, or one the checks above
        keep from Arrow's converters) comes back as text, read by Arrow: its records need
        no re-check, and the cast dead-letters the bad values.
        """
        found = scan(block, self._quote, self._delimiter, self._ints, empty_lines=self._one_column)
        if found is None:
            return None
        if b"\x00" not in block and not found.hex:  # a typed table holds no NUL (see Part): its text needs no scan for one
            try:
                options = self._ascii_options if found.ascii else self._convert_options
                table = self._read(pa.py_buffer(block), read_options=self._read_options, parse_options=self._parse_options, convert_options=options)
                for name in self._decimals:
                    table.column(name).validate(full=True)  # a value past the precision
                return table
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                if str(exc).startswith("CSV parse error"):  # the records themselves
                    return None
        try:
            text = self._read(pa.py_buffer(block), read_options=self._read_options, parse_options=self._parse_options, convert_options=self._text_options)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        df = pl.from_arrow(text)
        assert isinstance(df, pl.DataFrame)
        return df


WINDOW = 1 << 18  # bytes :func:`scan` looks at in one go: its NumPy passes over a window stay in the core's cache


class Scan(NamedTuple):
    """What :func:`scan` found in a block whose records Arrow reads as Polars does."""

    hex: bool  # ``0x`` or ``0X`` occurs (Arrow's integer parser reads it as hexadecimal; the cast refuses it)
    ascii: bool  # every byte is ASCII (valid UTF-8 without a check)


def scan(block: bytes, quote: bytes | None, delimiter: bytes, ints: bool, empty_lines: bool = True) -> Scan | None:
    """None where Arrow might split ``block``'s records or fields otherwise than Polars; else what else it holds.

    Refused: an empty line at the start, and where ``empty_lines`` (a one-column file:
    elsewhere Arrow refuses an empty line itself, as a record too short) any empty line
    (``\\n\\n``, ``\\n\\r\\n``); a carriage return but before a newline; a quote not well
    placed (:func:`quotes_well_placed`). ``0x``
    is looked for where ``ints`` (integer columns are typed). NumPy masks over windows of
    :data:`WINDOW` bytes, overlapping by two so that no pattern falls between two:
    each pass then reads the cache, not memory (1.3 ms a 2 MiB block of lineitem
    against 2.4 ms for the same passes over the whole block; a Python ``in`` of two
    bytes is slower still).

    >>> scan(b'a,"x ""y"" z"\\r\\n0x1,\\xc3\\xa9\\n', b'"', b",", ints=True)
    Scan(hex=True, ascii=False)
    >>> [scan(b, b'"', b",", ints=False) for b in (b"a\\n\\nb\\n", b"a\\n\\r\\nb", b"a\\rb\\n", b"\\na\\n", b"a\\r", b'a"b\\n')]
    [None, None, None, None, None, None]
    >>> scan(b"a,b\\n\\nc,d\\n", b'"', b",", ints=False, empty_lines=False)  # Arrow refuses that empty line itself
    Scan(hex=False, ascii=True)
    """
    if not block:
        return Scan(hex=False, ascii=True)
    if block[0] in (10, 13) or block[-1] == 13:  # an empty line or a CR first; a lone CR last
        return None
    buf = np.frombuffer(block, np.uint8)
    crs = b"\r" in block  # memchr: most files have none
    q = quote[0] if quote is not None and quote in block else None
    found, top = False, 0
    at: list[np.ndarray] = []
    for start in range(0, buf.size, WINDOW):
        w = buf[start : start + WINDOW + 2]
        if empty_lines or crs:
            newline = w == 10
            if empty_lines and (newline[1:] & newline[:-1]).any():
                return None
            if crs:
                cr = w == 13
                if (cr[:-1] & ~newline[1:]).any() or (empty_lines and (newline[:-2] & cr[1:-1] & newline[2:]).any()):
                    return None
        if ints and not found:
            found = bool((((w[1:] | 32) == 120) & (w[:-1] == 48)).any())
        top = max(top, int(w.max()))
        if q is not None:
            at.append(np.flatnonzero(w[:WINDOW] == q) + start)
    if q is not None and quote is not None and not quotes_well_placed(block, quote, delimiter, np.concatenate(at)):
        return None
    return Scan(hex=found, ascii=top < 128)


def quotes_well_placed(block: bytes, quote: bytes, delimiter: bytes, at: np.ndarray | None = None) -> bool:
    """Whether every quote of ``block`` (whole records) opens a field, closes one, or is doubled inside one, as RFC 4180 has it.

    Quotes alternate: the 1st, 3rd... open and the others close. An opening quote
    follows a delimiter, a newline, the block's start or a closing quote (a doubled
    quote); a closing quote precedes a delimiter, a line end, the block's end or an
    opening quote. Vectorized over the quote positions (``at``, when the caller found them).

    >>> quotes_well_placed(b'a,"b ""c"", d",""\\n"x",y\\r\\n', b'"', b",")
    True
    >>> [quotes_well_placed(b, b'"', b",") for b in (b'a,b"c\\n', b'a,"b"c\\n', b'a, "b"\\n', b'a,"b\\n')]
    [False, False, False, False]
    """
    if quote not in block:
        return True
    buf = np.frombuffer(block, np.uint8)
    if at is None:
        at = np.flatnonzero(buf == quote[0])
    if at.size % 2:
        return False
    opening, closing = at[0::2], at[1::2]
    before = buf[np.maximum(opening - 1, 0)]
    starts = (opening == 0) | (before == delimiter[0]) | (before == 10) | (before == quote[0])
    after = buf[np.minimum(closing + 1, buf.size - 1)]
    ends = (closing == buf.size - 1) | (after == delimiter[0]) | (after == 10) | (after == 13) | (after == quote[0])
    return bool(starts.all() and ends.all())


def ndjson(fh: BinaryIO, schema: pl.Schema, skip: int, batch_size: int, source: str = "<stream>") -> Iterator[pl.DataFrame]:
    """Frames of at most ``batch_size`` rows numbered above ``skip`` (blank lines are not rows), typed by ``schema``."""

    def parse(block: bytes, first: bool) -> pl.DataFrame:
        return pl.read_ndjson(block, schema=schema)

    yield from cast("Iterator[pl.DataFrame]", _batched(parse, _blocks(fh, None, source), skip, batch_size, at_once=2))  # one read_ndjson keeps ~1.3 cores busy


Frame: TypeAlias = pl.DataFrame | pa.Table
"""A parsed block or a batch: text (or NDJSON's types) in Polars, or a block Arrow typed (:class:`_ArrowCsv`)."""


def _batched(parse: Callable[[bytes, bool], Frame], blocks: Iterator[bytes], skip: int, batch_size: int, at_once: int) -> Iterator[Frame]:
    """The blocks parsed (``parse(block, first)``, ``at_once`` at a time) and their rows numbered; batches of those above ``skip``.

    Consecutive text blocks are joined and cut into batches; a block typed by Arrow is cut alone (it starts a new batch and ends one).
    """
    done = 0  # rows parsed so far
    pending: list[pl.DataFrame] = []
    held = 0
    for parsed in _parallel(parse, blocks, at_once):
        frame = _numbered(parsed, done + 1)
        done += len(frame)
        if done <= skip:
            continue
        if done - len(frame) < skip:
            frame = frame.slice(skip - (done - len(frame)))
        if isinstance(frame, pa.Table):  # a typed block: its own batches (joining blocks would cost a copy to make one batch of them)
            if pending:
                yield pl.concat(pending, rechunk=False)
                pending, held = [], 0
            for start in range(0, len(frame), batch_size):
                yield frame.slice(start, batch_size)
            continue
        if pending and frame.schema != pending[0].schema:
            yield pl.concat(pending, rechunk=False)
            pending, held = [], 0
        pending.append(frame)
        held += len(frame)
        while held >= batch_size:
            joined = pl.concat(pending, rechunk=False)
            yield joined.head(batch_size)
            rest = joined.slice(batch_size)
            pending, held = ([rest], rest.height) if rest.height else ([], 0)
    if held:
        yield pl.concat(pending, rechunk=False)


def _numbered(frame: Frame, first: int) -> Frame:
    """``frame`` with the row numbers from ``first`` in a first column, ``_conduit_row_number``."""
    if isinstance(frame, pl.DataFrame):
        return frame.with_row_index(ROW_NUMBER, offset=first)
    return frame.add_column(0, ROW_NUMBER, pa.array(np.arange(first, first + frame.num_rows, dtype=np.int64)))


def _parallel(parse: Callable[[bytes, bool], Frame], blocks: Iterator[bytes], at_once: int) -> Iterator[Frame]:
    """``parse`` of each block, in order, ``at_once`` blocks at a time (Polars releases the GIL while it parses)."""
    from collections import deque
    from concurrent.futures import Future, ThreadPoolExecutor

    if at_once == 1:
        for i, block in enumerate(blocks):
            yield parse(block, i == 0)
        return
    with ThreadPoolExecutor(at_once, thread_name_prefix="conduit-parse") as pool:
        parsing: deque[Future[Frame]] = deque()
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
