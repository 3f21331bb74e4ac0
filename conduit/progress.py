"""Progress: what a run tells its reporters, and the rich bars drawn on a terminal.

The run calls a :class:`Reporter`. The library default reports nothing but the
``conduit`` logger (:class:`conduit.logs.RunLog`); the CLI adds :class:`RichReporter`
on a terminal, and its log handlers print the lines (plain or JSON) everywhere else.
Reporters may be called from several threads at once (resources loading in parallel):
each keeps its state per resource, under a lock.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from conduit._text import plural

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import ProgressColumn, Task, TaskID

    from conduit.results import ResourceResult, RunResult


class Reporter:
    """The no-op reporter: every event a run emits, in order."""

    def run_started(self, run_id: str, resources: list[str], resumed: bool) -> None:
        """A run began (or resumed) with these resources."""

    def start(self, resource: str, total: int | None) -> None:
        """A resource began; ``total`` rows if known (an estimate for CSV and PostgreSQL tables)."""

    def advance(self, resource: str, rows: int) -> None:
        """``rows`` more rows were read."""

    def finish(self, result: ResourceResult) -> None:
        """A resource ended (``result.status`` says how)."""

    def message(self, text: str, resource: str | None = None, event: str = "message") -> None:
        """A notice for the user: resume decisions, schema warnings, retries (``event="retry"``)."""

    def run_finished(self, result: RunResult, duration_s: float) -> None:
        """The run ended."""

    def close(self) -> None:
        """Stop drawing."""


class Reporters(Reporter):
    """Several reporters as one: each event goes to each, in order."""

    def __init__(self, *reporters: Reporter):
        self.reporters = reporters

    def run_started(self, run_id: str, resources: list[str], resumed: bool) -> None:
        for r in self.reporters:
            r.run_started(run_id, resources, resumed)

    def start(self, resource: str, total: int | None) -> None:
        for r in self.reporters:
            r.start(resource, total)

    def advance(self, resource: str, rows: int) -> None:
        for r in self.reporters:
            r.advance(resource, rows)

    def finish(self, result: ResourceResult) -> None:
        for r in self.reporters:
            r.finish(result)

    def message(self, text: str, resource: str | None = None, event: str = "message") -> None:
        for r in self.reporters:
            r.message(text, resource, event)

    def run_finished(self, result: RunResult, duration_s: float) -> None:
        for r in self.reporters:
            r.run_finished(result, duration_s)

    def close(self) -> None:
        for r in self.reporters:
            r.close()


class RichReporter(Reporter):
    """One rich bar per resource: rows, rows/s, ETA when the total is known; a failed resource stays red where it stopped.

    The lines (summaries, notices) are the ``conduit`` logger's, printed on
    :attr:`console` above the bars by the CLI's handler.

    Examples
    --------
    >>> import io
    >>> from rich.console import Console
    >>> from conduit.results import ResourceResult
    >>> bars = RichReporter(Console(file=io.StringIO()))
    >>> bars.start("orders", 10); bars.advance("orders", 4)
    >>> bars.finish(ResourceResult("orders", "failed", error="orders: boom"))
    >>> bars.state("orders"), bars.task("orders").completed, bars.task("orders").total
    ('failed', 4, 10)
    >>> bars.close()
    """

    def __init__(self, console: Console | None = None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(finished_style="green"),
            TaskProgressColumn(),
            TextColumn("{task.fields[rows]}"),
            TextColumn("[cyan]{task.fields[rate]}"),
            TimeElapsedColumn(),
            _eta_column(),
            console=self.console,
            transient=False,
        )
        self.progress.start()
        self._lock = threading.Lock()
        self._tasks: dict[str, TaskID] = {}

    def start(self, resource: str, total: int | None) -> None:
        """Add a bar (indeterminate when the total is unknown)."""
        with self._lock:
            self._tasks[resource] = self.progress.add_task(f"[bold]{resource}", total=total or None, rows=_rows(0, total), rate="", state="running")

    def advance(self, resource: str, rows: int) -> None:
        """Move the bar; rows/s over rich's recent window; an estimate that proves low becomes unknown (no ETA)."""
        with self._lock:
            task_id = self._tasks.get(resource)
            if task_id is None:
                return
            self.progress.advance(task_id, rows)
            task = self.task(resource)
            if task.total is not None and task.completed > task.total:
                task.total = None  # rich's update() cannot unset a total
            speed = task.speed or 0
            self.progress.update(task_id, rows=_rows(int(task.completed), None if task.total is None else int(task.total)), rate=f"{speed:,.0f} rows/s")

    def finish(self, result: ResourceResult) -> None:
        """A success fills its bar; a failure stops it where it was, in red."""
        with self._lock:
            task_id = self._tasks.get(result.name)
            if task_id is None:
                return
            task = self.task(result.name)
            if result.status == "failed":
                self.progress.update(task_id, description=f"[bold red]{result.name} failed", state="failed")
                self.progress.stop_task(task_id)
            else:
                rate = result.rows_read / result.duration_s if result.duration_s > 0 else 0
                self.progress.update(task_id, total=task.completed or 1, completed=task.completed or 1, rows=_rows(result.rows_read, None), rate=f"{rate:,.0f} rows/s", state="done")
                self.progress.stop_task(task_id)

    def state(self, resource: str) -> str:
        """``running``, ``done`` or ``failed``."""
        return str(self.task(resource).fields["state"])

    def task(self, resource: str) -> Task:
        """The rich task of a resource's bar."""
        task_id = self._tasks[resource]
        return next(t for t in self.progress.tasks if t.id == task_id)

    def close(self) -> None:
        """Stop the live display."""
        self.progress.stop()


def _rows(done: int, total: int | None) -> str:
    return f"{done:,}/{plural(total, 'row')}" if total else plural(done, "row")


def _eta_column() -> ProgressColumn:
    """Time remaining while a bar runs; nothing once it is done or failed."""
    from rich.progress import TimeRemainingColumn
    from rich.text import Text

    class Eta(TimeRemainingColumn):
        def render(self, task: Task) -> Text:
            return super().render(task) if task.fields.get("state") == "running" else Text("")

    return Eta()
