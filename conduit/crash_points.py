"""Fault injection for crash tests: ``CONDUIT_FAULT=<point>[:<n>]`` SIGKILLs the process.

A resource load calls :func:`point` at named moments (``read``, ``staged``, ``publish``,
``published``; the DuckDB destination adds ``stage_commit`` and ``publish_commit``); when the variable names that point (and, with ``:n``, on its n-th
occurrence) the process kills itself with SIGKILL — a real crash, no cleanup, used by
the exactly-once tests. ``CONDUIT_PAUSE=<point>[:<n>]=<gate file>`` instead creates
the gate file there and waits until it is removed, holding a live run still at a known
moment (the lease and Ctrl-C tests). Without the variables this is two dict lookups.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

_counts: dict[str, int] = {}


def point(name: str) -> None:
    """Kill this process here if ``CONDUIT_FAULT`` asks for it."""
    wanted, pause = os.environ.get("CONDUIT_FAULT"), os.environ.get("CONDUIT_PAUSE")
    if wanted and _reached(wanted, name):
        os.kill(os.getpid(), signal.SIGKILL)
    if pause:
        where, _, gate = pause.partition("=")
        if _reached(where, name, "pause:"):
            _hold(Path(gate))


def _reached(wanted: str, name: str, key: str = "") -> bool:
    """Whether this is the occurrence of ``name`` that ``wanted`` (``point[:n]``) names; counts it."""
    target, _, nth = wanted.partition(":")
    if target != name:
        return False
    _counts[key + name] = _counts.get(key + name, 0) + 1
    return _counts[key + name] == int(nth or 1)


def _hold(gate: Path) -> None:
    """Create ``gate`` and wait (awake to signals) until it is removed."""
    gate.touch()
    while gate.exists():
        time.sleep(0.05)
