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


MALLOC_ARENAS = 2
"""glibc's malloc arenas (``MALLOC_ARENA_MAX`` in the environment wins). glibc gives threads that
allocate at once arenas of their own, up to 8 per core, and keeps what each frees for reuse
by it: with the staging threads' COPY buffers (pgpq's output, libpq's) and the Parquet
reader's file reads, a SF5 Parquet load into PostgreSQL grew from 190 to 324 MiB of
anonymous memory while Arrow's pool and Python's objects stayed flat; with 2 arenas it
stays near 240 MiB, as fast. Polars and Arrow allocate through their own jemalloc."""


def tune_process() -> None:
    """Set :data:`ENV_DEFAULTS` (and :data:`POLARS_JEMALLOC`, :data:`MALLOC_ARENAS`) where the environment does not say otherwise (cheap: imports nothing)."""
    for key, value in ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("_RJEM_MALLOC_CONF", POLARS_JEMALLOC)  # no effect once Polars is imported: it has set it
    if "MALLOC_ARENA_MAX" not in os.environ:
        _mallopt_arena_max(MALLOC_ARENAS)


def _mallopt_arena_max(arenas: int) -> None:
    """``mallopt(M_ARENA_MAX, arenas)`` where the C library is glibc (read at start-up, the variable would come too late: arenas made later obey this)."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):  # musl has no mallopt
        ctypes.CDLL(None).mallopt(-8, arenas)  # M_ARENA_MAX in glibc's malloc.h; the process's own symbols hold libc's


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
