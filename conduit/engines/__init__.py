"""Execution engines: how a run's resources and a load's part jobs are scheduled.

:mod:`conduit.engines.base` is the contract (:class:`~conduit.engines.base.Engine`,
:class:`~conduit.engines.base.PartJob`, :class:`~conduit.engines.base.PartOutcome`);
:mod:`conduit.engines.local` runs everything on threads of this process.
"""

from __future__ import annotations

from conduit.engines.base import ChunkDone, Engine, PartJob, PartOutcome, PartRef, PartRunner, default_workers

__all__ = ["ChunkDone", "Engine", "PartJob", "PartOutcome", "PartRef", "PartRunner", "default_workers"]
