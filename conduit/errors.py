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


class WorkerLost(ConduitError):
    """An engine's worker (a Ray task's process or node) died more often than the engine retries it.

    Retryable: chunks commit with their ledger rows, so another attempt resumes from them.
    """

    retryable = True
