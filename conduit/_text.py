"""Text helpers for what Conduit prints: counts with the right grammar.

Examples
--------
>>> plural(1, "row"), plural(2, "row"), plural(1234, "row"), plural(0, "leftover")
('1 row', '2 rows', '1,234 rows', '0 leftovers')
"""

from __future__ import annotations


def plural(n: int, word: str, many: str | None = None) -> str:
    """``n`` with thousands separators and ``word`` in the singular or plural (``many``, else ``word + "s"``)."""
    return f"{n:,} {word if n == 1 else many or word + 's'}"
