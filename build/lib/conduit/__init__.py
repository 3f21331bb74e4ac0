"""Conduit: declarative, columnar, exactly-once data loading.

The public surface is small: :func:`run` does what ``conduit run`` does, without
printing; :func:`load_project` reads and validates an ingest.yml.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conduit._version import __version__

__all__ = ["ConduitError", "RunResult", "__version__", "load_project", "run"]

if TYPE_CHECKING:
    from conduit.errors import ConduitError
    from conduit.project import load_project
    from conduit.results import RunResult
    from conduit.runner import run


def __getattr__(name: str) -> object:
    """Import lazily, so ``import conduit`` (and ``conduit --help``) stays fast."""
    if name == "run":
        from conduit.runner import run

        return run
    if name == "RunResult":
        from conduit.results import RunResult

        return RunResult
    if name == "load_project":
        from conduit.project import load_project

        return load_project
    if name == "ConduitError":
        from conduit.errors import ConduitError

        return ConduitError
    raise AttributeError(name)
