"""Backoff for retryable errors only.

An error is retried when it is a :class:`~conduit.errors.ConduitError` with
``retryable`` set (connection drops, a server restarting). Constraint violations, data
errors and unknown exceptions are raised at once: retrying them cannot help and may
hide a bug.

Examples
--------
>>> from conduit.errors import DestinationError
>>> calls = []
>>> def flaky():
...     calls.append(1)
...     if len(calls) < 3:
...         raise DestinationError("server closed the connection", retryable=True)
...     return "ok"
>>> call(flaky, sleep=lambda s: None), len(calls)
('ok', 3)
>>> def bad():
...     raise DestinationError("duplicate key", sqlstate="23505")
>>> call(bad, sleep=lambda s: None)
Traceback (most recent call last):
conduit.errors.DestinationError: duplicate key
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from conduit.errors import ConduitError

T = TypeVar("T")


def delays(attempts: int, base: float = 0.5, cap: float = 8.0) -> list[float]:
    """The sleeps between ``attempts`` tries: exponential, capped, with jitter (50-100%)."""
    return [min(cap, base * 2**i) * (0.5 + random.random() / 2) for i in range(attempts - 1)]


def call(fn: Callable[[], T], *, attempts: int = 4, base: float = 0.5, cap: float = 8.0, sleep: Callable[[float], None] = time.sleep) -> T:
    """Call ``fn``; on a retryable :class:`ConduitError` wait and try again, up to ``attempts`` times."""
    waits = delays(attempts, base, cap)
    for wait in waits:
        try:
            return fn()
        except ConduitError as exc:
            if not exc.retryable:
                raise
        sleep(wait)
    return fn()
