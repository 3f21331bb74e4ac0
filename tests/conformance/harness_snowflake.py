"""Conformance harness for ``type: snowflake``: fakesnow locally, a real account when configured.

With ``CONDUIT_TEST_SNOWFLAKE_URI`` set (an adbc-driver-snowflake URI,
``user:password@account/DATABASE/SCHEMA?warehouse=...&role=...``) the harness targets
that account; otherwise it starts fakesnow's server (tests/stand_ins/servers.py). Each
harness owns a fresh schema; checks go through their own connection, never the
destination's.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
from stand_ins import servers

DATABASE = "CONDUIT_TEST"
_PLAIN_LOWER = re.compile(r"^[a-z_][a-z0-9_$]*$")
_PLAIN_UPPER = re.compile(r"^[A-Z_][A-Z0-9_$]*$")


# Snowflake's identifier rules, written out here so the read-back does not share Conduit's code.
def name(identifier: str) -> str:
    """The stored name: an unquoted lower-case identifier is stored upper-case."""
    return identifier.upper() if _PLAIN_LOWER.match(identifier) else identifier


def ident(identifier: str) -> str:
    """The quoted identifier for a stored name."""
    return '"' + name(identifier).replace('"', '""') + '"'


def arrow_name(stored: str) -> str:
    """The name as Conduit shows it (``ID`` -> ``id``)."""
    return stored.lower() if _PLAIN_UPPER.match(stored) else stored


class SnowflakeHarness:
    """The Harness protocol (tests/conformance/harness.py) for Snowflake."""

    type = "snowflake"

    def __init__(self, uri: str | None = None):
        self.uri = uri if uri is not None else os.environ.get("CONDUIT_TEST_SNOWFLAKE_URI")
        self.schema = f"T_{uuid.uuid4().hex[:10].upper()}"
        if self.uri:
            m = re.match(r"^(?:[^@]+@)?[^/]+/([^/?]+)", self.uri)
            self.database = m[1] if m else DATABASE
            self.endpoint = None
        else:
            self.endpoint = servers.require(servers.fakesnow)
            self.database = DATABASE
        self._conn: Any = None
        self.execute(f"CREATE DATABASE IF NOT EXISTS {ident(self.database)}") if not self.uri else None
        self.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(self.database)}.{ident(self.schema)}")

    # --- an independent connection ----------------------------------------------------

    def _connect(self) -> Any:
        if self._conn is None:
            if self.uri:
                import adbc_driver_snowflake.dbapi as sf

                self._conn = sf.connect(self.uri, autocommit=True)
            else:
                import snowflake.connector

                assert self.endpoint is not None
                self._conn = snowflake.connector.connect(
                    user="fake",
                    password="snow",
                    account="fakesnow",
                    host=self.endpoint.host,
                    port=self.endpoint.port,
                    protocol="http",
                    session_parameters={"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False},
                    network_timeout=10,
                )
        return self._conn

    def execute(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run ``sql`` on the harness's own connection; rows as tuples."""
        cur = self._connect().cursor()
        try:
            cur.execute(sql, params) if params else cur.execute(sql)
            return [tuple(r) for r in cur.fetchall()] if cur.description else []
        finally:
            cur.close()

    def close(self) -> None:
        """Drop the harness schema and close the connection."""
        if self._conn is not None:
            try:
                self.execute(f"DROP SCHEMA IF EXISTS {ident(self.database)}.{ident(self.schema)} CASCADE")
            finally:
                self._conn.close()
                self._conn = None

    # --- the protocol ----------------------------------------------------------------------

    def destination_yaml(self, tmp_path: Path) -> dict[str, Any]:
        """The destinations[] entry (without name)."""
        if self.uri:
            return {"type": "snowflake", "connection_string": self.uri, "database": self.database, "db_schema": self.schema}
        assert self.endpoint is not None
        return {
            "type": "snowflake",
            "account": "fakesnow",
            "user": "fake",
            "password": "snow",
            "database": self.database,
            "db_schema": self.schema,
            "host": self.endpoint.host,
            "port": self.endpoint.port,
            "protocol": "http",
            "login_timeout_s": 10,
        }

    def table_name(self, base: str) -> str:
        """``<schema>.<base>_<unique>`` (lower-case: stored upper-case, the Snowflake way)."""
        return f"{self.schema.lower()}.{base.lower()}_{uuid.uuid4().hex[:6]}"

    def _ref(self, table: str) -> str:
        schema, _, bare = table.rpartition(".")
        return f"{ident(self.database)}.{ident(schema or self.schema)}.{ident(bare)}"

    def count(self, table: str) -> int:
        """``COUNT(*)``."""
        return int(self.execute(f"SELECT COUNT(*) FROM {self._ref(table)}")[0][0])

    def read(self, table: str) -> pa.Table:
        """The whole table as Arrow, column names as Conduit shows them (``ID`` -> ``id``)."""
        cur = self._connect().cursor()
        try:
            cur.execute(f"SELECT * FROM {self._ref(table)}")
            if self.uri:
                data = cur.fetch_arrow_table()
            else:  # snowflake-connector-python needs pandas for Arrow: build it from rows (small tables)
                names = [d[0] for d in cur.description]
                rows = cur.fetchall()
                data = pa.table({n: pa.array([r[i] for r in rows]) for i, n in enumerate(names)})
        finally:
            cur.close()
        return data.rename_columns([arrow_name(c) for c in data.column_names])

    def column_types(self, table: str) -> dict[str, str]:
        """Column name -> lower-case Snowflake type (``number``, ``timestamp_ntz``, ``variant``...)."""
        schema, _, bare = table.rpartition(".")
        rows = self.execute(
            f"SELECT COLUMN_NAME, DATA_TYPE FROM {ident(self.database)}.INFORMATION_SCHEMA.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION"
            if not self.uri
            else f"SELECT COLUMN_NAME, DATA_TYPE FROM {ident(self.database)}.INFORMATION_SCHEMA.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            [name(schema or self.schema), name(bare)],
        )
        return {arrow_name(r[0]): str(r[1]).lower() for r in rows}

    def drop(self, table: str) -> None:
        """``DROP TABLE IF EXISTS``."""
        self.execute(f"DROP TABLE IF EXISTS {self._ref(table)}")


def snowflake_harness() -> SnowflakeHarness:
    """Factory for ``HARNESSES["snowflake"]``."""
    return SnowflakeHarness()
