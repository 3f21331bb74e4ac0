"""The ``conduit`` logger: what a run emits, for orchestrators, CI and log files.

Every run logs to ``logging.getLogger("conduit")`` through :class:`RunLog`: run start
and end, resource start and end (rows, rows/s, duration, dead letters, error),
progress at most every 10 s per resource, retries and notices. The library configures
no handler (a ``NullHandler``), so a host (Airflow, Dagster, a script's
``logging.basicConfig``) captures the records with its own. Each record carries its
fields as a dict in ``record.conduit`` (``event``, ``run_id``, ``resource``, ``rows``,
``duration_s`` ...).

The CLI installs its handlers with :func:`cli_handlers` (``--log-format text|json``,
``--log-file``, ``--debug``) for the duration of one command (:func:`cli_session`).

Examples
--------
>>> import logging, io
>>> stream = io.StringIO()
>>> handler = logging.StreamHandler(stream)
>>> handler.setFormatter(JsonFormatter())
>>> logger.addHandler(handler); logger.setLevel(logging.INFO)
>>> log = RunLog(); log.run_id = "r1"
>>> log.start("orders", None)
>>> line = json.loads(stream.getvalue())
>>> line["event"], line["run_id"], line["resource"], line["message"]
('resource_start', 'r1', 'orders', 'orders: started')
>>> logger.removeHandler(handler); logger.setLevel(logging.NOTSET)
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conduit import _secrets
from conduit._text import plural
from conduit.errors import UsageError
from conduit.progress import Reporter

if TYPE_CHECKING:
    from rich.console import Console

    from conduit.results import ResourceResult, RunResult

logger = logging.getLogger("conduit")
PROGRESS_EVERY_S = 10.0
"""At most one progress record per resource in this many seconds."""


@dataclass
class _Seen:
    started: float
    total: int | None
    rows: int = 0
    last: float = 0.0


class RunLog(Reporter):
    """A run's events as records of the ``conduit`` logger; thread-safe (state per resource, under a lock).

    Parameters
    ----------
    every_s
        Seconds between two progress records of one resource.
    clock
        Monotonic seconds (tests pass their own).
    """

    def __init__(self, every_s: float = PROGRESS_EVERY_S, clock: Callable[[], float] = time.monotonic):
        self.run_id: str | None = None
        self.every_s, self.clock = every_s, clock
        self._lock = threading.Lock()
        self._seen: dict[str, _Seen] = {}

    def _log(self, level: int, event: str, text: str, exc_info: BaseException | None = None, **fields: object) -> None:
        if logger.isEnabledFor(level):
            logger.log(level, text, exc_info=exc_info, extra={"conduit": {"event": event, "run_id": self.run_id, **fields}})

    def run_started(self, run_id: str, resources: list[str], resumed: bool) -> None:
        """``run_start``."""
        self.run_id = run_id
        self._log(logging.INFO, "run_start", f"run {run_id}: {'resumed' if resumed else 'started'} ({plural(len(resources), 'resource')})", resources=resources, resumed=resumed)

    def start(self, resource: str, total: int | None) -> None:
        """``resource_start``, with ``total`` (rows expected) when known."""
        now = self.clock()
        with self._lock:
            self._seen[resource] = _Seen(now, total, last=now)
        self._log(logging.INFO, "resource_start", f"{resource}: started" + (f" (~{plural(total, 'row')})" if total else ""), resource=resource, total=total)

    def advance(self, resource: str, rows: int) -> None:
        """``progress``: rows read so far, rows/s, ETA when the total is known; at most one per ``every_s``."""
        now = self.clock()
        with self._lock:
            seen = self._seen.get(resource)
            if seen is None:
                return
            seen.rows += rows
            if now - seen.last < self.every_s:
                return
            seen.last = now
            n, total, elapsed = seen.rows, seen.total, now - seen.started
        rate = n / elapsed if elapsed > 0 else 0.0
        eta = (total - n) / rate if total and rate and n < total else None
        text = f"{resource}: {n:,}" + (f" of ~{plural(total, 'row')}" if total else " " + ("row" if n == 1 else "rows")) + f" read ({rate:,.0f} rows/s" + (f", ETA {_duration(eta)})" if eta is not None else ")")
        self._log(logging.INFO, "progress", text, resource=resource, rows=n, total=total, rows_per_s=round(rate, 1), eta_s=None if eta is None else round(eta, 1), duration_s=round(elapsed, 3))

    def finish(self, result: ResourceResult) -> None:
        """``resource_end``: status, rows (written), rows read, dead-lettered, warned, duration, rows/s, error."""
        with self._lock:
            self._seen.pop(result.name, None)
        rate = result.rows_read / result.duration_s if result.duration_s > 0 else 0.0
        level = logging.ERROR if result.status == "failed" else logging.INFO
        self._log(
            level,
            "resource_end",
            result.summary(),
            resource=result.name,
            status=result.status,
            table=result.table or None,
            rows=result.rows_written,
            rows_read=result.rows_read,
            rows_dlq=result.rows_dlq,
            rows_warned=result.rows_warned,
            duration_s=round(result.duration_s, 3),
            rows_per_s=round(rate, 1),
            dlq_path=result.dlq_path,
            error=result.error,
        )

    def message(self, text: str, resource: str | None = None, event: str = "message") -> None:
        """A notice; ``retry`` events are warnings."""
        self._log(logging.WARNING if event == "retry" else logging.INFO, event, text, resource=resource)

    def run_finished(self, result: RunResult, duration_s: float) -> None:
        """``run_end``: status, rows written in all, duration, the failed resources."""
        failed = [r.name for r in result.resources if r.status == "failed"]
        text = f"run {result.run_id}: {result.status}" + (" (resumed)" if result.resumed else "")
        rows, dlq = sum(r.rows_written for r in result.resources), sum(r.rows_dlq for r in result.resources)
        self._log(logging.ERROR if failed else logging.INFO, "run_end", text, status=result.status, rows=rows, rows_dlq=dlq, duration_s=round(duration_s, 3), failed=failed, resumed=result.resumed)


def debug_traceback(run_id: str, resource: str, exc: BaseException) -> None:
    """Log a failure's traceback at DEBUG (the CLI shows it with ``--debug``); the stored error stays one line."""
    logger.debug("%s: traceback", resource, exc_info=exc, extra={"conduit": {"event": "traceback", "run_id": run_id, "resource": resource}})


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (UTC, ISO 8601), ``level``, ``event``, ``message``, then the record's fields; secrets redacted."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = getattr(record, "conduit", None) or {}
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": fields.get("event", "log"),
            "message": record.getMessage(),
            **{k: v for k, v in fields.items() if k != "event"},
        }
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        if record.name != logger.name:
            out["logger"] = record.name
        return json.dumps(_redacted(out), default=str)


def _redacted(value: Any) -> Any:
    """Secrets masked in every string of a record's fields (before JSON escaping could hide one)."""
    if isinstance(value, str):
        return _secrets.redact(value)
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v) for v in value]
    return value


class TextFormatter(logging.Formatter):
    """``HH:MM:SS message`` (``with_date``: the full UTC time and the level), then any traceback; secrets redacted."""

    def __init__(self, with_date: bool = False):
        super().__init__()
        self.with_date = with_date

    def format(self, record: logging.LogRecord) -> str:
        if self.with_date:
            head = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="seconds") + f" {record.levelname:<7} "
        else:
            head = time.strftime("%H:%M:%S ", time.localtime(record.created))
        text = head + record.getMessage()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return _secrets.redact(text)


class _ConsoleHandler(logging.Handler):
    """Prints records on a rich console, above its live bars; progress records are left to the bars."""

    def __init__(self, console: Console):
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        if (getattr(record, "conduit", None) or {}).get("event") == "progress":
            return
        try:
            style = "red" if record.levelno >= logging.ERROR else "yellow" if record.levelno >= logging.WARNING else None
            self.console.print(self.format(record), style=style, markup=False, highlight=False)
        except Exception:  # noqa: BLE001 - logging must not raise
            self.handleError(record)


@dataclass
class _Session:
    handlers: list[logging.Handler]
    json: bool = False


_session: _Session | None = None


@contextlib.contextmanager
def cli_session() -> Iterator[None]:
    """One CLI command: the handlers :func:`cli_handlers` installs are removed (and closed) at the end."""
    global _session
    before, level = _session, logger.level
    _session = _Session([])
    try:
        yield
    finally:
        for handler in _session.handlers:
            logger.removeHandler(handler)
            handler.close()
        _session = before
        logger.setLevel(level)


def cli_handlers(fmt: str, log_file: Path | None, debug: bool, console: Console | None = None) -> Callable[[], None] | None:
    """Install the CLI's handlers on the ``conduit`` logger for this command.

    Lines go to stderr in ``fmt`` (``text``: ``HH:MM:SS message``; ``json``: one object
    per line), or, with ``console`` (bars on a terminal), printed above the bars; with
    ``log_file`` also appended to that file, in the same format (text with the date and
    level). INFO and up; DEBUG (tracebacks) with ``debug``.

    Under :func:`cli_session` the session removes them; otherwise (a command invoked
    without :func:`conduit.cli.main`, as click's test runner does) the returned function
    does, and the caller must call it.
    """
    session = _session if _session is not None else _Session([])
    level = logging.DEBUG if debug else logging.INFO
    stream: logging.Handler = _ConsoleHandler(console) if console is not None else logging.StreamHandler(sys.stderr)
    stream.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handlers = [stream]
    if log_file is not None:
        try:
            file = logging.FileHandler(log_file, encoding="utf-8")
        except OSError as exc:
            stream.close()
            msg = f"--log-file {log_file}: {exc.strerror or exc}"
            raise UsageError(msg) from None
        file.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(with_date=True))
        handlers.append(file)
    for handler in handlers:
        handler.setLevel(level)
        logger.addHandler(handler)
    session.handlers += handlers
    session.json = fmt == "json"
    level_before = logger.level
    logger.setLevel(level)
    if _session is not None:
        return None

    def remove() -> None:
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()
        logger.setLevel(level_before)

    return remove


def cli_error(line: str, exc: BaseException, debug: bool) -> bool:
    """Report the error that ends a CLI command through this command's log handlers, if it installed any.

    With ``--log-format json`` the line is a JSON record like every other one; with
    text, the caller prints it (``error: ...``) and only a log file gets the record.
    Returns whether the line was printed on stderr here.
    """
    session = _session
    if session is None or not session.handlers:
        return False
    extra = {"conduit": {"event": "error", "error": line.removeprefix("error: ")}}
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 0, line, (), (type(exc), exc, exc.__traceback__) if debug else None, extra=extra)
    targets = session.handlers if session.json else [h for h in session.handlers if isinstance(h, logging.FileHandler)]
    for handler in targets:
        handler.handle(record)
    return session.json


def usage_error_json(text: str) -> str:
    """The JSON line of a usage error found before a command ran (``--log-format json`` given, no handler installed yet)."""
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 0, text, (), None, extra={"conduit": {"event": "error", "error": text.removeprefix("error: ")}})
    return JsonFormatter().format(record)


def _duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
