"""The local engine: resources and part jobs on threads of this process.

Polars, Arrow, DuckDB and the database drivers release the GIL in their hot loops,
so threads overlap reading, coercing and staging well on one machine.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import ClassVar

from conduit.engines.base import Engine, PartJob, PartOutcome, PartRunner, R, T


class LocalEngine(Engine):
    """Threads: up to ``workers`` resources at once, each running its part jobs on its own threads.

    Examples
    --------
    >>> LocalEngine(2).map_resources(lambda x: x * 10, [1, 2, 3])
    [10, 20, 30]
    """

    name: ClassVar[str] = "local"

    def map_resources(self, fn: Callable[[R], T], items: Sequence[R], parallelism: Callable[[R], int] | None = None) -> list[T]:
        """See :meth:`Engine.map_resources`; one item runs on the calling thread when ``workers`` is 1."""
        if self.workers == 1 or len(items) <= 1:
            return [fn(item) for item in items]
        with ThreadPoolExecutor(min(self.workers, len(items)), thread_name_prefix="conduit-resource") as pool:
            futures = [pool.submit(fn, item) for item in items]
            try:
                return [f.result() for f in futures]
            except BaseException:
                for f in futures:
                    f.cancel()
                raise

    def map_parts(self, runner: PartRunner, jobs: Iterable[PartJob], parallelism: int) -> Iterator[PartOutcome]:
        """See :meth:`Engine.map_parts`; with ``parallelism`` 1 the jobs run on the calling thread."""
        if parallelism <= 1:
            for job in jobs:
                yield runner(job)
            return
        yield from _threaded(runner, iter(jobs), parallelism)


def _threaded(runner: PartRunner, jobs: Iterator[PartJob], parallelism: int) -> Iterator[PartOutcome]:
    """Keep ``parallelism`` jobs running; yield outcomes as they finish; first error wins."""
    pool = ThreadPoolExecutor(parallelism, thread_name_prefix="conduit-part")
    running: set[Future[PartOutcome]] = set()
    error: BaseException | None = None
    try:
        for job in itertools.islice(jobs, parallelism):
            running.add(pool.submit(runner, job))
        while running:
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for f in done:
                exc = f.exception()
                if exc is not None:
                    error = error or exc
                    continue
                if error is None:
                    yield f.result()
            if error is None:
                for job in itertools.islice(jobs, len(done)):
                    running.add(pool.submit(runner, job))
        if error is not None:
            raise error
    finally:
        for f in running:
            f.cancel()
        pool.shutdown(wait=True)
