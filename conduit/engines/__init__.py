"""Execution engines: how a run's resources and a load's part jobs are scheduled.

:mod:`conduit.engines.base` is the contract (:class:`~conduit.engines.base.Engine`,
:class:`~conduit.engines.base.PartJob`, :class:`~conduit.engines.base.PartOutcome`);
:mod:`conduit.engines.local` runs everything on threads of this process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conduit.engines.base import ChunkDone, Engine, PartJob, PartOutcome, PartRef, PartRunner, default_workers
from conduit.errors import UsageError

if TYPE_CHECKING:
    from conduit.project import Project

__all__ = ["ChunkDone", "Engine", "PartJob", "PartOutcome", "PartRef", "PartRunner", "default_workers", "engine_for"]


def engine_for(project: Project, kind: str | None = None, address: str | None = None, workers: int | None = None) -> Engine:
    """The engine of a run of ``project``: ``kind`` and ``address`` (the CLI's) win over ``engine:`` in ingest.yml.

    The Ray engine's module is imported only when a run asks for it.
    """
    cfg = project.config.engine
    kind = kind or cfg.type
    if kind == "local":
        from conduit.engines.local import LocalEngine

        return LocalEngine(workers)
    if kind == "ray":
        from conduit.engines.ray_engine import RayEngine, worker_env

        return RayEngine(project.path, workers, address or cfg.address, worker_env(project.path, cfg.forward_env), project.target)
    msg = f"unknown engine {kind!r}; known: local, ray"
    raise UsageError(msg)
