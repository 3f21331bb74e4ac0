"""Keys seen so far in a resource run, for the ``unique`` check across batches.

Every key becomes one ``uint64``: a single integer column exactly; several integer
columns packed exactly into one word when the values fit the bit layout chosen on the
first batch (a later key that does not fit is hashed, with the top bit set, so the two
kinds never meet); anything else (strings, mixed columns) a 64-bit hash of the row's
key values, so two different keys collide with probability about n²/2⁶⁵.

The set is a log-structured one, all NumPy, no Python row loop:

* sorted runs: each batch's new keys are appended as one sorted run; when four runs
  of the same level exist they are merged into one run of the next level, so a key is
  copied about log₄(batches) times in a whole run;
* a prefilter: a byte array of about eight slots per key, two slots per key set, so
  only about 5% of never-seen keys need the exact lookup; it doubles (and is rebuilt
  from the runs) as the set grows;
* the exact lookup of the remaining candidates runs only over runs whose key range
  overlaps them, which makes increasing keys (ids, time-ordered data) nearly free.

Memory is about 8 bytes per distinct key for the runs plus 8 to 16 for the prefilter.

Examples
--------
>>> import polars as pl
>>> seen = UniqueKeys()
>>> seen.add(pl.DataFrame({"k": [1, 2, 1, None]}), ["k"]).to_list()
[False, False, True, False]
>>> seen.add(pl.DataFrame({"k": [3, 2]}), ["k"]).to_list()
[False, True]
>>> seen.add(pl.DataFrame({"a": [1, 1], "b": [2, 3]}), ["a", "b"]) is None
True
"""

from __future__ import annotations

import numpy as np
import polars as pl

_SEED = 0x5EED
_GOLD = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing multipliers (odd 64-bit constants)
_GOLD2 = np.uint64(0xC2B2AE3D27D4EB4F)
_TOP = 1 << 63
_FAN_IN = 4
_SLOTS_PER_KEY = 8
_MIN_BITS = 20


class UniqueKeys:
    """A growing set of keys; :meth:`add` says which rows of a batch repeat a key."""

    def __init__(self) -> None:
        self._runs: list[np.ndarray] = []
        self._levels: list[int] = []
        self._n = 0
        self._bits = _MIN_BITS
        self._filter = np.zeros(0, np.bool_)  # built once keys stop arriving in order
        self._layout: list[int] | None = None  # bit widths of packed integer columns
        self.added: list[np.ndarray] = []  # new keys of each add() since the caller last took them

    def __len__(self) -> int:
        return self._n

    # --- keys ------------------------------------------------------------------------

    def encode(self, df: pl.DataFrame, cols: list[str]) -> np.ndarray:
        """The ``uint64`` key of every row of ``df`` (no NULLs in ``cols``)."""
        schema = df.schema
        if len(cols) == 1 and schema[cols[0]].is_integer():
            s = df.get_column(cols[0])
            return s.to_numpy() if s.dtype == pl.UInt64 else s.cast(pl.Int64).to_numpy().view(np.uint64)
        hashed = pl.struct(cols).hash(_SEED)
        if not all(schema[c].is_integer() for c in cols):
            return df.select(hashed).to_series().to_numpy()
        if self._layout is None:
            self._layout = _layout(df, cols)
        if not self._layout:
            return df.select(hashed).to_series().to_numpy()
        packed, fits = _pack(cols, self._layout)
        if bool(df.select(fits.all()).item()):
            return df.select(packed).to_series().to_numpy()
        return df.select(pl.when(fits).then(packed).otherwise(hashed | pl.lit(_TOP, pl.UInt64))).to_series().to_numpy()

    # --- the set -----------------------------------------------------------------------

    def add(self, df: pl.DataFrame, cols: list[str]) -> pl.Series | None:
        """Mark rows whose key was seen before (in an earlier batch or earlier in this one).

        Rows with a NULL in any key column are never duplicates (SQL semantics). Returns
        None when nothing repeats (the common case), else a boolean Series.
        """
        if df.height == 0:
            return None
        present = df.select(pl.all_horizontal(pl.col(c).is_not_null() for c in cols)).to_series()
        has_null = present.null_count() > 0 or not present.all()
        part = df.filter(present) if has_null else df
        keys = self.encode(part, cols)
        dup = self.add_keys(keys)
        if dup is None:
            return None
        found = pl.Series("dup", dup)
        if has_null:
            return pl.repeat(False, df.height, dtype=pl.Boolean, eager=True).alias("dup").scatter(present.arg_true(), found)
        return found

    def add_keys(self, keys: np.ndarray) -> np.ndarray | None:
        """Insert ``keys``; a boolean array of the repeats (None when there are none)."""
        ks = np.sort(keys)
        same = ks[1:] == ks[:-1]
        inner = bool(same.any())
        uk = ks[np.concatenate(([True], ~same))] if inner else ks
        old = np.zeros(0, np.uint64)
        cand = self._in_range(uk)
        if cand.size > uk.size // 20 and not self._filter.size:
            self._grow()  # keys arrive in no useful order: the prefilter pays from now on
        if cand.size and self._filter.size:
            a, b = self._slots(uk[cand])
            cand = cand[self._filter[a] & self._filter[b]]
        if cand.size:
            hit = self._contains(uk[cand])
            if hit.any():
                old = uk[cand[hit]]
                keep = np.ones(uk.size, np.bool_)
                keep[cand[hit]] = False
                uk = uk[keep]
        self._insert(uk)
        if not inner and not old.size:
            return None
        series = pl.Series(keys)
        dup = series.is_in(pl.Series(old).implode()) if old.size else pl.repeat(False, keys.size, eager=True)
        if inner:
            dup = dup | ~series.is_first_distinct()
        return dup.to_numpy()

    def restore(self, keys: np.ndarray) -> None:
        """Put back keys saved by an earlier, interrupted attempt of the run (on resume)."""
        if keys.size:
            self.add_keys(keys.astype(np.uint64, copy=False))
            self.added.clear()

    def _in_range(self, uk: np.ndarray) -> np.ndarray:
        """Positions of the sorted ``uk`` that fall inside some run's key range."""
        if not self._runs:
            return np.zeros(0, np.intp)
        inside = np.zeros(uk.size, np.bool_)
        for run in self._runs:
            lo, hi = np.searchsorted(uk, run[0], side="left"), np.searchsorted(uk, run[-1], side="right")
            inside[lo:hi] = True
        return np.flatnonzero(inside)

    def _slots(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Two prefilter slots per key, in the same 64-byte block (one cache miss)."""
        a = (keys * _GOLD) >> np.uint64(64 - self._bits)
        b = (a & ~np.uint64(63)) | (((keys ^ (keys >> np.uint64(29))) * _GOLD2) >> np.uint64(58))
        return a, b

    def _contains(self, cand: np.ndarray) -> np.ndarray:
        """Which of the sorted ``cand`` are in some run (exact)."""
        hit = np.zeros(cand.size, np.bool_)
        for run in self._runs:
            lo, hi = np.searchsorted(cand, run[0], side="left"), np.searchsorted(cand, run[-1], side="right")
            if lo >= hi:
                continue
            sub = cand[lo:hi]
            pos = np.minimum(np.searchsorted(run, sub), run.size - 1)
            hit[lo:hi] |= run[pos] == sub
        return hit

    def _insert(self, new: np.ndarray) -> None:
        """Add sorted, unseen ``new`` keys: filter slots, a new run, merges, growth."""
        if not new.size:
            return
        self.added.append(new)
        self._n += new.size
        self._runs.append(new)
        self._levels.append(0)
        while len(self._levels) >= _FAN_IN and len(set(self._levels[-_FAN_IN:])) == 1:
            level = self._levels[-1]
            merged = np.sort(np.concatenate(self._runs[-_FAN_IN:]), kind="stable")
            del self._runs[-_FAN_IN:], self._levels[-_FAN_IN:]
            self._runs.append(merged)
            self._levels.append(level + 1)
        if not self._filter.size:
            return
        if self._n * _SLOTS_PER_KEY > self._filter.size:
            self._grow()
        else:
            self._mark(new)

    def _grow(self) -> None:
        """(Re)build the prefilter at about ``_SLOTS_PER_KEY`` slots per key."""
        self._bits = max(self._bits, (self._n * _SLOTS_PER_KEY).bit_length())
        self._filter = np.zeros(1 << self._bits, np.bool_)
        for run in self._runs:
            self._mark(run)

    def _mark(self, keys: np.ndarray) -> None:
        a, b = self._slots(keys)
        self._filter[a] = True
        self._filter[b] = True


def _layout(df: pl.DataFrame, cols: list[str]) -> list[int]:
    """Bit widths packing integer ``cols`` exactly (the first column takes what is left), or []."""
    stats = df.select(*(pl.col(c).min().alias(f"lo{i}") for i, c in enumerate(cols)), *(pl.col(c).max().alias(f"hi{i}") for i, c in enumerate(cols))).row(0)
    lows, highs = stats[: len(cols)], stats[len(cols) :]
    if any(v is None or v < 0 for v in lows):
        return []
    widths = [int(h).bit_length() + 2 for h in highs[1:]]  # two bits of headroom
    first = 63 - sum(widths)
    if first < int(highs[0]).bit_length() + 8:
        return []
    return [first, *widths]


def _pack(cols: list[str], widths: list[int]) -> tuple[pl.Expr, pl.Expr]:
    """The packed key and the condition that every value fits its width."""
    packed: pl.Expr = pl.lit(0, pl.UInt64)
    fits: pl.Expr = pl.lit(True)
    for col, width in zip(cols, widths, strict=True):
        c = pl.col(col)
        fits = fits & (c >= 0) & (c < (1 << width))
        packed = packed * pl.lit(1 << width, pl.UInt64) + c.cast(pl.UInt64, strict=False)
    return packed, fits
