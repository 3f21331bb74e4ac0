"""Quality checks as vectorized Polars expressions (filled in by the checks issue).

:func:`validate` rejects unknown checks and actions at plan time (exit 2);
:class:`Checks` evaluates a resource's checks over each batch and enforces the
dead-letter limits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conduit.errors import ConfigError, QualityCheckFailed

if TYPE_CHECKING:
    from conduit.config import Project, ResourceConfig

BUILTIN_CHECKS = ("not_null", "unique", "regex", "range", "enum", "expression")


def validate(project: Project, index: int, res: ResourceConfig) -> None:
    """Raise :class:`ConfigError` for an unknown check name."""
    for j, check in enumerate(res.quality_checks):
        if check.check not in BUILTIN_CHECKS:
            line = project.lines.get(("resources", index, "quality_checks", j, "check"), 1)
            msg = f"{project.path.name}:{line}: resources[{index}].quality_checks[{j}].check: unknown check {check.check!r}; known: {', '.join(BUILTIN_CHECKS)}"
            raise ConfigError(msg)


class Checks:
    """The checks of one resource during one run."""

    def __init__(self, res: ResourceConfig):
        self.res = res

    def evaluator(self) -> Any:
        """A batch function (frame -> kept frame, bad rows, warning counts), or None."""
        return None

    def enforce_limits(self, result: Any, final: bool = False) -> None:
        """Fail the resource once ``max_dlq_rows`` / ``max_dlq_fraction`` is passed."""
        res = self.res
        if res.max_dlq_rows is not None and result.rows_dlq > res.max_dlq_rows:
            msg = f"{res.name}: {result.rows_dlq:,} rows dead-lettered, more than max_dlq_rows={res.max_dlq_rows:,}; nothing published"
            raise QualityCheckFailed(msg)
        if final and res.max_dlq_fraction is not None and result.rows_read and result.rows_dlq / result.rows_read > res.max_dlq_fraction:
            msg = f"{res.name}: {result.rows_dlq / result.rows_read:.2%} of rows dead-lettered, more than max_dlq_fraction={res.max_dlq_fraction}; nothing published"
            raise QualityCheckFailed(msg)
