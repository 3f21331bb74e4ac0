"""Fixtures of the destination conformance suite: one ``harness`` per registered type."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness import HARNESSES, Harness


@pytest.fixture(params=sorted(HARNESSES))
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    """A destination harness (closed afterwards when it has ``close``)."""
    h = HARNESSES[request.param]()
    yield h
    close = getattr(h, "close", None)
    if close is not None:
        close()
