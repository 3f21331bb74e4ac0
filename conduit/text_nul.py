"""Whether Arrow text columns hold a NUL character: one scan of each column's bytes.

A ``string`` or ``large_string`` array keeps its values back to back in one data
buffer, so the bytes between the first and the last offset are exactly the values'
bytes: a zero byte there is a NUL in some value. NumPy counts them at memory speed,
several times faster than a per-value substring search (``str.contains`` in Polars,
``match_substring`` in Arrow). A ``string_view`` array is copied to that layout first.

Examples
--------
>>> import pyarrow as pa
>>> holds_nul(pa.array(["a", None, "b\\x00c"]).slice(2)), holds_nul(pa.array(["a", None, "b\\x00c"]).slice(0, 2))
(True, False)
>>> holds_nul(pa.array(["x\\x00"], pa.large_string())), holds_nul(pa.array(["x"], pa.string_view()))
(True, False)
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def holds_nul(arr: pa.Array | pa.ChunkedArray) -> bool:
    """Whether any value of the text array ``arr`` contains ``\\x00``."""
    if isinstance(arr, pa.ChunkedArray):
        return any(holds_nul(chunk) for chunk in arr.chunks)
    if len(arr) == 0:
        return False
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = arr.cast(pa.large_string())
    _, offsets, data = arr.buffers()
    if data is None:
        return False
    width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    bounds = np.frombuffer(offsets, dtype=width, count=len(arr) + 1, offset=arr.offset * np.dtype(width).itemsize)
    start, end = int(bounds[0]), int(bounds[-1])
    values = np.frombuffer(data, dtype=np.uint8, count=end - start, offset=start)
    return int(np.count_nonzero(values)) != end - start
