"""Conduit: declarative, columnar, exactly-once data loading.

The public surface is small: :func:`run` does what ``conduit run`` does, without
printing; :func:`load_project` reads and validates an ingest.yml.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("conduit-load")  # the distribution name; import and CLI stay ``conduit``
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0+unknown"
__all__ = ["ConduitError", "RunResult", "__version__", "load_project", "run"]

if TYPE_CHECKING:
    from conduit.config import load_project
    from conduit.engine import RunResult, run
    from conduit.errors import ConduitError


def __getattr__(name: str) -> Any:
    """Import lazily, so ``import conduit`` (and ``conduit --help``) stays fast."""
    if name in ("run", "RunResult"):
        from conduit import engine

        return getattr(engine, name)
    if name == "load_project":
        from conduit.config import load_project

        return load_project
    if name == "ConduitError":
        from conduit.errors import ConduitError

        return ConduitError
    raise AttributeError(name)
