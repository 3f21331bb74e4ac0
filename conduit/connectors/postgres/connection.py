"""PostgreSQL connections: options, the libpq URI, connecting, and readable errors.

Passwords are registered with :mod:`conduit._secrets` as soon as options are read,
so no message, log or store row can show them. Driver errors become one line with
the server's message and SQLSTATE; connection drops are marked retryable, data and
constraint errors (classes 22, 23) never are.

Examples
--------
>>> opts = PostgresOptions(host="db", port=5433, database="wh", user="app", password="s3cr3t")
>>> build_uri(opts)
'postgresql://app:s3cr3t@db:5433/wh?connect_timeout=10'
>>> describe(opts)
'postgresql://app@db:5433/wh'
>>> clean_message('INTEGRITY: [libpq] Failed to execute COPY statement: PGRES_FATAL_ERROR ERROR:  duplicate key value violates unique constraint "t_pkey"\\nDETAIL:  Key (a)=(1) already exists.\\nCONTEXT:  COPY t\\n. SQLSTATE: 23505')
'duplicate key value violates unique constraint "t_pkey" (Key (a)=(1) already exists.)'
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from pydantic import Field

from conduit import _secrets
from conduit.config import Strict
from conduit.errors import ConnectionFailed, DestinationError

if TYPE_CHECKING:
    import adbc_driver_manager.dbapi as adbc
    import psycopg

_C = TypeVar("_C")


class PostgresOptions(Strict):
    """Keys of a PostgreSQL source or destination."""

    connection_string: str | None = None
    host: str | None = None
    port: int | None = Field(default=None, gt=0, lt=65536)
    database: str | None = None
    user: str | None = None
    password: str | None = None
    db_schema: str = "public"
    connect_timeout: int = Field(default=10, gt=0)
    copy_streams: int = Field(default=2, ge=1, le=16)

    def model_post_init(self, context: Any) -> None:
        """Register secrets before anything can print them."""
        _secrets.register(self.password)
        if self.connection_string:
            _secrets.register(_secrets.uri_password(self.connection_string) or _key_values(self.connection_string).get("password"))


def build_uri(options: PostgresOptions) -> str:
    """The libpq URI (with password) from ``connection_string`` or the separate keys."""
    if options.connection_string:
        uri = options.connection_string
    else:
        auth = quote(options.user or "", safe="")
        if options.password:
            auth += ":" + quote(options.password, safe="")
        host = options.host or "127.0.0.1"
        port = f":{options.port}" if options.port else ""
        uri = f"postgresql://{auth + '@' if auth else ''}{host}{port}/{quote(options.database or '', safe='')}"
    if "://" not in uri:  # a key/value DSN: host=... dbname=...
        return uri if "connect_timeout" in _key_values(uri) else f"{uri} connect_timeout={options.connect_timeout}"
    parts = urlsplit(uri)
    query = dict(parse_qsl(parts.query))
    query.setdefault("connect_timeout", str(options.connect_timeout))
    return urlunsplit(parts._replace(query=urlencode(query)))


_KEY_VALUE = re.compile(r"(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)")


def _key_values(dsn: str) -> dict[str, str]:
    """The keys of a libpq key/value DSN (quoted values unquoted).

    >>> _key_values("host=db dbname='my db' user = app")
    {'host': 'db', 'dbname': 'my db', 'user': 'app'}
    """
    return {k: v[1:-1].replace("\\'", "'") if v.startswith("'") else v for k, v in _KEY_VALUE.findall(dsn)}


def describe(options: PostgresOptions) -> str:
    """``postgresql://user@host:port/db``: no password, no parameters."""
    uri = build_uri(options)
    if "://" not in uri:
        kv = _key_values(uri)
        user = f"{kv['user']}@" if "user" in kv else ""
        port = f":{kv['port']}" if "port" in kv else ""
        return f"postgresql://{user}{kv.get('host', '')}{port}/{kv.get('dbname', '')}"
    parts = urlsplit(uri)
    user = f"{parts.username}@" if parts.username else ""
    port = f":{parts.port}" if parts.port else ""
    return f"postgresql://{user}{parts.hostname or ''}{port}{parts.path}"


_PREFIXES = re.compile(r"^(?:[A-Z_]+: )?(?:connection failed: )?(?:\[libpq\] )?(?:Failed to [^:]+: )?(?:could not begin COPY: )?(?:PGRES_FATAL_ERROR )?(?:ERROR:\s+)?")
_CONNECT = re.compile(r'^connection to server at "[^"]*"(?: \([^)]*\))?, port \d+ failed: (?:FATAL:\s+)?')


def clean_message(text: str) -> str:
    """The server's message in one line: no driver prefixes, no CONTEXT or query echo."""
    text = text.split("\n\nQuery was:")[0]
    text = re.sub(r"\.? SQLSTATE: [0-9A-Z]{5}$", "", text.strip())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith(("CONTEXT:", "HINT:", "Is the server running"))]
    if not lines:
        return text.strip()
    head = _CONNECT.sub("", _PREFIXES.sub("", lines[0]))
    details = [ln.removeprefix("DETAIL:").strip() for ln in lines[1:] if ln.startswith("DETAIL:")]
    head = head.rstrip(". ") if details else head
    return _secrets.redact(head + (f" ({'; '.join(details)})" if details else ""))


_RETRYABLE = ("08000", "08001", "08003", "08004", "08006", "57P01", "57P02", "57P03", "53300")
_DROPPED = ("server closed the connection", "connection refused", "timeout expired", "no connection to the server", "terminating connection", "the connection is closed", "the connection is lost", "connection is bad")
"""Messages of a lost connection without an SQLSTATE (libpq; psycopg on a connection whose backend went away)."""


def error(exc: Exception, what: str) -> DestinationError:
    """A :class:`DestinationError` for a driver exception, with SQLSTATE and retryability."""
    sqlstate = getattr(exc, "sqlstate", None) or None
    text = clean_message(str(exc))
    retryable = sqlstate in _RETRYABLE or (sqlstate or "").startswith("08") or (sqlstate is None and any(d in str(exc).lower() for d in _DROPPED))
    if sqlstate and (sqlstate.startswith(("22", "23")) or sqlstate == "08P01"):
        retryable = False
    suffix = f" (SQLSTATE {sqlstate})" if sqlstate else ""
    msg = f"{what}: {text}{suffix}"
    return DestinationError(msg, sqlstate=sqlstate, retryable=retryable)


def connect(options: PostgresOptions, who: str, autocommit: bool = False) -> adbc.Connection:
    """An ADBC connection; :class:`ConnectionFailed` (one line, no password) if it fails."""
    import adbc_driver_postgresql.dbapi as pg

    return _connected(lambda: pg.connect(build_uri(options), autocommit=autocommit), options, who)


def connect_copy(options: PostgresOptions, who: str, raw: bool = False) -> psycopg.Connection[tuple[Any, ...]]:
    """A psycopg connection (binary COPY of pre-encoded rows); errors as :func:`connect`.

    ``raw``: its cursors take ADBC's ``$1`` placeholders (psycopg's ``RawCursor``), so the
    destination's catalog, ledger and publish statements run on it unchanged, and a load
    into PostgreSQL does not load the ADBC driver at all (about 30 MiB of resident memory).
    """
    import psycopg

    def open_() -> psycopg.Connection[tuple[Any, ...]]:
        conn = psycopg.connect(build_uri(options))
        if raw:
            conn.cursor_factory = psycopg.RawCursor
        return conn

    return _connected(open_, options, who)


def _connected(open_: Callable[[], _C], options: PostgresOptions, who: str) -> _C:
    try:
        conn = open_()
    except Exception as exc:  # noqa: BLE001 - every driver failure becomes one line
        raw = str(exc)
        reason = clean_message(raw)
        if "timeout expired" in raw:
            reason = f"no answer within {options.connect_timeout}s (timeout expired)"
        elif "Connection refused" in raw:
            reason = "connection refused (is PostgreSQL running there and listening on TCP?)"
        msg = f"{who}: cannot connect to {describe(options)}: {reason}"
        raise ConnectionFailed(msg, retryable="timeout expired" in raw or "Connection refused" in raw) from None
    return conn


def ping(options: PostgresOptions, who: str) -> None:
    """Connect and run ``SELECT 1`` (what ``conduit validate`` does)."""
    conn = connect(options, who, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchall()
    except Exception as exc:  # noqa: BLE001
        raise error(exc, f"{who}: SELECT 1 failed") from None
    finally:
        conn.close()
