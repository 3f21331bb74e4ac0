"""Every exception Conduit raises on purpose.

One root, :class:`ConduitError`, and a few leaves. Each error carries what a
program needs (``retryable``, ``exit_code``, the server's ``sqlstate``) and what a
person needs (one clear line, ``str(err)``). The CLI maps errors to exit codes in
one place (:func:`conduit.cli.main`); raise sites never pick exit codes.

Examples
--------
>>> from conduit.errors import ConfigError
>>> err = ConfigError("resources[0].write_mode: 'apend' is not one of append, replace, merge")
>>> err.exit_code, err.retryable
(2, False)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conduit.results import RunResult


class ConduitError(Exception):
    """Root of every error Conduit raises on purpose.

    Attributes
    ----------
    exit_code
        What the CLI exits with: 2 for usage/config errors (nothing ran), 1 otherwise.
    retryable
        Whether retrying the same operation may succeed (connection drops do;
        constraint violations and unknown errors never do).
    """

    exit_code: int = 1
    retryable: bool = False


class ConfigError(ConduitError):
    """The ingest.yml (or a CLI argument) is wrong; nothing ran."""

    exit_code = 2


class UsageError(ConfigError):
    """A CLI invocation that cannot run (unknown resource, missing config file)."""


class NotAColumn(ConfigError):
    """A key of a resource (``primary_keys``, ``partition_by``) names a column its source does not have.

    ``key`` is the resource's config key, so ``conduit validate`` can point at its line.
    """

    def __init__(self, resource: str, key: str, detail: str):
        super().__init__(f"{resource}: {key}: {detail}")
        self.key, self.detail = key, detail


class ConnectorNotFound(ConfigError):
    """A ``type:`` that no built-in or plug-in connector provides."""


class SourceError(ConduitError):
    """A source could not be read (missing file, unreadable object, bad query)."""


class DestinationError(ConduitError):
    """A destination refused a statement or could not be reached.

    Parameters
    ----------
    message
        One readable line, ideally the server's own message.
    sqlstate
        The server's SQLSTATE, when there is one.
    retryable
        True for connection-level failures only.
    """

    def __init__(self, message: str, *, sqlstate: str | None = None, retryable: bool = False):
        super().__init__(message)
        self.sqlstate = sqlstate
        self.retryable = retryable


class ConnectionFailed(DestinationError):
    """The destination or source server could not be reached or refused the login."""


class StagingLost(DestinationError):
    """The destination's ledger lists staged chunks whose rows are gone (e.g. emptied by crash recovery).

    The engine aborts the load's staging and stages it again from the start.
    """


class SchemaMismatch(ConduitError):
    """The incoming schema differs from the destination table and the mode forbids the change."""


class QualityCheckFailed(ConduitError):
    """A ``fail`` check tripped, or the dead-letter limit was passed; nothing was published."""


class StoreLocked(ConduitError):
    """The local store stayed locked by another process past the timeout."""

    retryable = True


class LeaseHeld(ConduitError):
    """Another live run holds the lease of a resource in this store (``--wait`` waits for it)."""


class RunFailed(ConduitError):
    """A resource of a run failed (``conduit.run(..., raise_on_error=True)``); ``result`` is the whole :class:`~conduit.results.RunResult`.

    Examples
    --------
    >>> from conduit.results import ResourceResult, RunResult
    >>> err = RunFailed(RunResult("r1", "failed", [ResourceResult("orders", "failed", error="orders: no such file")]))
    >>> str(err), err.exit_code
    ('run r1 failed: orders: no such file', 1)
    """

    def __init__(self, result: RunResult):
        failed = "; ".join(r.error or f"{r.name}: failed" for r in result.resources if r.status == "failed")
        super().__init__(f"run {result.run_id} failed: {failed}")
        self.result = result


def one_line(exc: BaseException) -> str:
    """The one line an error is stored and printed as; the traceback is only for ``--debug``.

    A Conduit error is its message with its lines joined (a server's DETAIL stays); any
    other exception is its type and the first line of its message.

    Examples
    --------
    >>> one_line(ConfigError("bad key\\n  at line 3"))
    'bad key at line 3'
    >>> one_line(RuntimeError("boom\\n\\nThis error occurred in the following expression: ..."))
    'RuntimeError: boom'
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if isinstance(exc, ConduitError):
        return " ".join(lines)
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


class WorkerLost(ConduitError):
    """An engine's worker (a Ray task's process or node) died more often than the engine retries it.

    Retryable: chunks commit with their ledger rows, so another attempt resumes from them.
    """

    retryable = True
