"""Process tuning shared by the CLI and :func:`conduit.run`.

Each setting is a default: a variable already in the environment wins.
"""

from __future__ import annotations

import contextlib
import os

ENV_DEFAULTS = {
    # Bounded memory: Polars' readers otherwise run far ahead of a slower consumer. Its
    # CSV reader prefetches many 32 MiB chunks, its Parquet reader many row groups.
    "POLARS_CSV_CHUNK_PREFETCH_LIMIT": "2",
    "POLARS_CSV_CHUNK_SIZE": str(8 << 20),
    "POLARS_ROW_GROUP_PREFETCH_SIZE": "2",
    # Nothing in Conduit does linear algebra: NumPy's OpenBLAS gets one thread, whose
    # idle pool would otherwise spin for a while after start-up on another core. It
    # takes effect only if NumPy is not imported yet.
    "OPENBLAS_NUM_THREADS": "1",
}


POLARS_JEMALLOC = "narenas:1,dirty_decay_ms:1000,muzzy_decay_ms:0"
"""Polars' own jemalloc: one arena (not 4 per core, each keeping its freed pages) and freed
pages returned within a second: about 25 MiB less resident on a CSV load into PostgreSQL, with
no more system time. Polars reads ``_RJEM_MALLOC_CONF`` once, when it is first imported, and
then rewrites it (its own defaults, then these), so it is not one of :data:`ENV_DEFAULTS`."""


def tune_process() -> None:
    """Set :data:`ENV_DEFAULTS` (and :data:`POLARS_JEMALLOC`) where the environment does not say otherwise (cheap: imports nothing)."""
    for key, value in ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("_RJEM_MALLOC_CONF", POLARS_JEMALLOC)  # no effect once Polars is imported: it has set it


def arrow_allocator() -> None:
    """Arrow allocates through jemalloc where pyarrow has it, unless ``ARROW_DEFAULT_MEMORY_POOL`` says otherwise.

    pyarrow's default, mimalloc, hands freed batches back to the kernel and faults them
    in again, which costs system time and peak memory on large loads. The pool is
    process-wide: a program that calls :func:`conduit.run` gets it too.
    """
    if "ARROW_DEFAULT_MEMORY_POOL" in os.environ:
        return
    import pyarrow as pa

    with contextlib.suppress(NotImplementedError):  # a pyarrow built without jemalloc
        pa.set_memory_pool(pa.jemalloc_memory_pool())
