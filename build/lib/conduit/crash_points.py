"""Fault injection for crash tests: ``CONDUIT_FAULT=<point>[:<n>]`` SIGKILLs the process.

A resource load calls :func:`point` at named moments (``read``, ``staged``, ``publish``,
``published``; the DuckDB destination adds ``stage_commit`` and ``publish_commit``); when the variable names that point (and, with ``:n``, on its n-th
occurrence) the process kills itself with SIGKILL — a real crash, no cleanup, used by
the exactly-once tests. Without the variable this is one dict lookup.
"""

from __future__ import annotations

import os
import signal

_counts: dict[str, int] = {}


def point(name: str) -> None:
    """Kill this process here if ``CONDUIT_FAULT`` asks for it."""
    wanted = os.environ.get("CONDUIT_FAULT")
    if not wanted:
        return
    target, _, nth = wanted.partition(":")
    if target != name:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
