"""What a run returns: :class:`RunResult`, with one :class:`ResourceResult` per resource."""

from __future__ import annotations

from dataclasses import dataclass, field

from conduit._text import plural


@dataclass
class ResourceResult:
    """What happened to one resource."""

    name: str
    status: str = "pending"
    table: str = ""
    rows_read: int = 0
    rows_written: int = 0
    rows_dlq: int = 0
    rows_warned: int = 0
    rows_filtered: int = 0
    bytes_read: int = 0
    duration_s: float = 0.0
    error: str | None = None
    dlq_path: str | None = None
    hwm_before: str | None = None
    checks: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """The one line printed per resource.

        Examples
        --------
        >>> ResourceResult("people", "success", "main.people", rows_read=1, rows_written=1, duration_s=0.5).summary()
        'people: 1 row loaded into main.people in 0.5s (2 rows/s)'
        """
        if self.status == "failed":
            return f"{self.name}: failed: {(self.error or '').removeprefix(self.name + ': ')}"
        rate = self.rows_read / self.duration_s if self.duration_s > 0 else 0
        text = f"{self.name}: {plural(self.rows_written, 'row')} loaded into {self.table} in {self.duration_s:.1f}s ({rate:,.0f} rows/s)"
        if self.rows_filtered:
            text += f", {plural(self.rows_filtered, 'row')} already loaded (incremental)"
        if self.rows_written == 0 and self.hwm_before is not None:
            text += f", nothing newer than {self.hwm_before}"
        if self.rows_dlq:
            detail = ", ".join(f"{k}: {v:,}" for k, v in self.checks.items() if not k.startswith(("warn ", "null ")))
            text += f", {self.rows_dlq:,} dead-lettered ({detail}) -> {self.dlq_path}"
        if self.rows_warned:
            text += f", {plural(self.rows_warned, 'warning')}"
        for key, n in self.checks.items():
            if key.startswith("null "):
                text += f", {plural(n, 'row')} with NULL {key[5:]} loaded once"
        return text


@dataclass
class RunResult:
    """What :func:`conduit.run` returns."""

    run_id: str
    status: str
    resources: list[ResourceResult]
    resumed: bool = False

    @property
    def exit_code(self) -> int:
        """0 when every resource succeeded (dead letters allowed), else 1."""
        return 1 if any(r.status == "failed" for r in self.resources) else 0
