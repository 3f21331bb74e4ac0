"""The local engine: resources and part jobs on threads of this process.

Polars, Arrow, DuckDB and the database drivers release the GIL in their hot loops,
so threads overlap reading, coercing and staging well on one machine. The threads are
daemons: Ctrl-C ends the run at once (like a crash, what was staged stays for
``--resume``) instead of waiting for jobs held inside a destination call.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
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
        """See :meth:`Engine.map_resources`; everything runs on the calling thread when ``workers`` is 1."""
        if self.workers == 1 or len(items) <= 1:
            return [fn(item) for item in items]
        results: dict[int, T] = {}
        for i, value in _run_all(fn, list(enumerate(items)), self.workers):
            results[i] = value
        return [results[i] for i in range(len(items))]

    def map_parts(self, runner: PartRunner, jobs: Iterable[PartJob], parallelism: int) -> Iterator[PartOutcome]:
        """See :meth:`Engine.map_parts`; with ``parallelism`` 1 the jobs run on the calling thread."""
        if parallelism <= 1:
            for job in jobs:
                yield runner(job)
            return
        for _, outcome in _run_all(runner, ((0, job) for job in jobs), parallelism):
            yield outcome


def _run_all(fn: Callable[[R], T], items: Iterable[tuple[int, R]], parallelism: int) -> Iterator[tuple[int, T]]:
    """``(key, fn(item))`` as they finish, at most ``parallelism`` running, items taken lazily; first error wins.

    After an error no item starts and the running ones are waited for before it re-raises;
    so they are when the consumer stops early. Ctrl-C does not wait (the threads are daemons).
    """
    done: queue.Queue[tuple[int, T | None, BaseException | None]] = queue.Queue()
    it = iter(items)
    running = 0
    error: BaseException | None = None

    def work(key: int, item: R) -> None:
        try:
            value = fn(item)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            done.put((key, None, exc))
        else:
            done.put((key, value, None))

    def start() -> bool:
        nonlocal running
        for key, item in it:
            threading.Thread(target=work, args=(key, item), daemon=True, name="conduit-job").start()
            running += 1
            return True
        return False

    interrupted = False
    try:
        while running < parallelism and start():
            pass
        while running:
            key, value, exc = done.get()
            running -= 1
            if exc is not None:
                error = error or exc
            elif error is None:
                yield key, value  # type: ignore[misc]
            if error is None:
                start()
        if error is not None:
            raise error
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        while running and not interrupted:  # the consumer stopped early or an item failed: let the running ones end
            done.get()
            running -= 1
