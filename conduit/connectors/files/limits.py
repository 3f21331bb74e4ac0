"""The longest record the CSV and NDJSON readers buffer.

A file without newlines (or with a quote that never closes) would otherwise be held
whole in memory, several times over, while the reader looks for the record's end. Past
:data:`MAX_LINE_BYTES` the read stops with a :class:`~conduit.errors.SourceError` naming
the file and the line the record starts on.
"""

from __future__ import annotations

from conduit.errors import SourceError

MAX_LINE_BYTES = 64 << 20  # read at call time, so tests may lower it


def line_too_long(source: str, line: int) -> SourceError:
    """The error for a record longer than :data:`MAX_LINE_BYTES` that starts at physical ``line`` (1-based) of ``source``."""
    return SourceError(f"{source}: the record at line {line:,} is longer than {MAX_LINE_BYTES:,} bytes (no newline, or an unclosed quote); split the file or fix the quoting")
