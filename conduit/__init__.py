"""Conduit: declarative, columnar, exactly-once data loading.

The public surface is small: :func:`run` does what ``conduit run`` does, without
printing (``raise_on_error=True`` raises :class:`RunFailed` when a resource failed);
:func:`load_project` reads and validates an ingest.yml. Runs log to the ``conduit``
logger, which has no handler of its own (:mod:`conduit.logs`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from conduit._version import __version__

__all__ = ["ConduitError", "RunFailed", "RunResult", "__version__", "load_project", "run"]

logging.getLogger("conduit").addHandler(logging.NullHandler())  # a run's records are the host's to handle (conduit.logs)

if TYPE_CHECKING:
    from conduit.errors import ConduitError, RunFailed
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
    if name == "RunFailed":
        from conduit.errors import RunFailed

        return RunFailed
    raise AttributeError(name)
