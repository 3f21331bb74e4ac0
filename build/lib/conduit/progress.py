"""Progress reporting: rich bars on a terminal, plain or JSON lines elsewhere.

The engine calls a :class:`Reporter`; the library default reports nothing, the CLI
picks :class:`RichReporter` on a TTY and :class:`LineReporter` otherwise (a line per
resource at start and end, and at most one every 10 seconds in between).
"""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.progress import TaskID


class Reporter:
    """The no-op reporter (library use)."""

    def start(self, resource: str, total: int | None) -> None:
        """A resource began; ``total`` rows if known."""

    def advance(self, resource: str, rows: int) -> None:
        """``rows`` more rows were read."""

    def finish(self, resource: str, summary: str, ok: bool) -> None:
        """A resource ended with a one-line summary."""

    def message(self, text: str) -> None:
        """A notice for the user (resume decisions, schema warnings)."""

    def close(self) -> None:
        """Stop drawing."""


class LineReporter(Reporter):
    """Plain lines (``fmt="text"``) or JSON lines (``fmt="json"``), throttled to one per 10 s."""

    def __init__(self, stream: TextIO | None = None, fmt: str = "text", every_s: float = 10.0, progress: bool = True):
        self.stream = stream or sys.stderr
        self.fmt = fmt
        self.every_s = every_s if progress else float("inf")
        self.progress = progress
        self._rows: dict[str, int] = {}
        self._started: dict[str, float] = {}
        self._last = 0.0

    def _emit(self, event: str, text: str, **fields: object) -> None:
        if self.fmt == "json":
            line = json.dumps({"ts": time.time(), "event": event, "message": text, **fields})
        else:
            line = f"{time.strftime('%H:%M:%S')} {text}"
        print(line, file=self.stream, flush=True)

    def start(self, resource: str, total: int | None) -> None:
        """Announce the resource (unless progress is off)."""
        self._rows[resource] = 0
        self._started[resource] = time.monotonic()
        if self.progress:
            self._emit("start", f"{resource}: started" + (f" ({total:,} rows)" if total else ""), resource=resource, total=total)

    def advance(self, resource: str, rows: int) -> None:
        """Count; print at most every ``every_s`` seconds."""
        self._rows[resource] = self._rows.get(resource, 0) + rows
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            n = self._rows[resource]
            rate = n / max(now - self._started.get(resource, now), 1e-9)
            self._emit("progress", f"{resource}: {n:,} rows read ({rate:,.0f} rows/s)", resource=resource, rows=n, rows_per_s=rate)

    def finish(self, resource: str, summary: str, ok: bool) -> None:
        """Print the summary."""
        self._emit("finish", summary, resource=resource, ok=ok)

    def message(self, text: str) -> None:
        """Print a notice."""
        self._emit("message", text)


class RichReporter(Reporter):
    """One rich bar per resource with rows, rows/s and ETA."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            MofNCompleteColumn(),
            TextColumn("[cyan]{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.progress.start()
        self._tasks: dict[str, TaskID] = {}

    def start(self, resource: str, total: int | None) -> None:
        """Add a bar."""
        self._tasks[resource] = self.progress.add_task(resource, total=total, rate="")

    def advance(self, resource: str, rows: int) -> None:
        """Move the bar and refresh rows/s."""
        task_id = self._tasks[resource]
        self.progress.advance(task_id, rows)
        speed = self.progress.tasks[task_id].speed or 0
        self.progress.update(task_id, rate=f"{speed:,.0f} rows/s")

    def finish(self, resource: str, summary: str, ok: bool) -> None:
        """Complete the bar and print the summary."""
        task_id = self._tasks.get(resource)
        if task_id is not None:
            task = self.progress.tasks[task_id]
            self.progress.update(task_id, total=task.completed)
        self.console.print(("[green]" if ok else "[red]") + summary.replace("[", "\\["))

    def message(self, text: str) -> None:
        """Print a notice above the bars."""
        self.console.print(text.replace("[", "\\["))

    def close(self) -> None:
        """Stop the live display."""
        self.progress.stop()
