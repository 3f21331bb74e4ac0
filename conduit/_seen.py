"""Keys seen so far in a resource run, for the ``unique`` check across batches.

One sorted ``uint64`` NumPy array per check: a batch is looked up with one
``searchsorted`` and merged in with one ``insert`` (linear), so there is no Python row
loop and memory is 8 bytes per distinct key. A single integer column is stored
exactly; any other key (strings, several columns) as a 64-bit hash of the row's key
values, so two different keys collide with probability about n²/2⁶⁵ (one in a
million for 6 million keys).

Examples
--------
>>> import polars as pl
>>> seen = SeenKeys()
>>> seen.add(pl.DataFrame({"k": [1, 2, 1, None]}), ["k"]).to_list()
[False, False, True, False]
>>> seen.add(pl.DataFrame({"k": [3, 2]}), ["k"]).to_list()
[False, True]
"""

from __future__ import annotations

from typing import Any

import polars as pl

_SEED = 0x5EED


class SeenKeys:
    """A growing set of keys; :meth:`add` says which rows of a batch repeat a key."""

    def __init__(self) -> None:
        import numpy as np

        self._np = np
        self._keys = np.zeros(0, np.uint64)

    def __len__(self) -> int:
        return len(self._keys)

    def _encode(self, df: pl.DataFrame, cols: list[str]) -> Any:
        np = self._np
        if len(cols) == 1 and df.schema[cols[0]].is_integer():
            return df.get_column(cols[0]).cast(pl.Int64).to_numpy().view(np.uint64)
        return df.select(pl.struct(cols).hash(_SEED)).to_series().to_numpy()

    def add(self, df: pl.DataFrame, cols: list[str]) -> pl.Series | None:
        """Mark rows whose key was seen before (in an earlier batch or earlier in this one).

        Rows with a NULL in any key column are never duplicates (SQL semantics). Returns
        None when nothing repeats (the common case), else a boolean Series.
        """
        np = self._np
        if df.height == 0:
            return None
        present = df.select(pl.all_horizontal(pl.col(c).is_not_null() for c in cols)).to_series()
        has_null = present.null_count() > 0 or not present.all()
        part = df.filter(present) if has_null else df
        keys = self._encode(part, cols)
        order = np.argsort(keys, kind="stable")
        ks = keys[order]
        dup = np.zeros(len(ks), bool)
        dup[1:] = ks[1:] == ks[:-1]
        if len(self._keys):
            pos = np.searchsorted(self._keys, ks)
            inside = pos < len(self._keys)
            dup[inside] |= self._keys[pos[inside]] == ks[inside]
        else:
            pos = np.zeros(len(ks), np.int64)
        new = ~dup
        self._keys = np.insert(self._keys, pos[new], ks[new])
        if not dup.any():
            return None
        out = np.empty(len(ks), bool)
        out[order] = dup
        found = pl.Series("dup", out)
        if has_null:
            return pl.repeat(False, df.height, dtype=pl.Boolean, eager=True).alias("dup").scatter(present.arg_true(), found)
        return found
