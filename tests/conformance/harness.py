"""The destination conformance harness: one small class per destination type.

A harness knows how to point Conduit at a destination (``destination_yaml``) and how
to look at what landed through its own, independent connection (psycopg, DuckDB,
pyarrow, the warehouse's own client; never Conduit's connector code). The conformance
tests are parametrized over :data:`HARNESSES`; a destination joins the suite by adding
its factory there (factories take no required arguments; a harness may have a
``close()`` that the fixture calls afterwards).
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import services


class Harness(Protocol):
    """What the conformance suite needs from a destination."""

    type: str  # connector type, e.g. "postgresql"

    def destination_yaml(self, tmp_path: Path) -> dict[str, Any]: ...  # the destinations[] entry (without name)
    def table_name(self, base: str) -> str: ...  # a unique, qualified table name for a test
    def count(self, table: str) -> int: ...  # COUNT(*) through an independent connection
    def read(self, table: str) -> pa.Table: ...  # whole table through an independent connection (small tables only)
    def column_types(self, table: str) -> dict[str, str]: ...  # lower-case server type names
    def drop(self, table: str) -> None: ...


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _qualified(table: str) -> str:
    schema, _, name = table.rpartition(".")
    return f"{_q(schema)}.{_q(name)}" if schema else _q(name)


class DuckDBHarness:
    """``type: duckdb``: a DuckDB file in the test's temporary folder."""

    type = "duckdb"

    def __init__(self) -> None:
        self.path: Path | None = None

    def destination_yaml(self, tmp_path: Path) -> dict[str, Any]:
        """A file ``warehouse.duckdb`` beside the ingest.yml."""
        self.path = tmp_path / "warehouse.duckdb"
        return {"type": "duckdb", "path": str(self.path)}

    def _con(self) -> Any:
        import duckdb

        assert self.path is not None
        return duckdb.connect(str(self.path), read_only=True)

    def table_name(self, base: str) -> str:
        """``main.<base>_<unique>``."""
        return f"main.{base}_{uuid.uuid4().hex[:8]}"

    def count(self, table: str) -> int:
        """COUNT(*) through a read-only connection."""
        with self._con() as con:
            return int(con.execute(f"SELECT count(*) FROM {_qualified(table)}").fetchall()[0][0])

    def read(self, table: str) -> pa.Table:
        """The whole table as Arrow."""
        with self._con() as con:
            return con.sql(f"SELECT * FROM {_qualified(table)}").to_arrow_table()

    def column_types(self, table: str) -> dict[str, str]:
        """DuckDB's type names, lower-case."""
        schema, _, name = table.rpartition(".")
        with self._con() as con:
            rows = con.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position", [schema or "main", name]).fetchall()
        return {c: t.lower() for c, t in rows}

    def drop(self, table: str) -> None:
        """Drop the table (the file goes with the temporary folder anyway)."""
        import duckdb

        assert self.path is not None
        with duckdb.connect(str(self.path)) as con:
            con.execute(f"DROP TABLE IF EXISTS {_qualified(table)}").fetchall()


class PostgresHarness:
    """``type: postgresql``: a fresh schema on the test server, read back with psycopg (not Conduit's driver code)."""

    type = "postgresql"

    def __init__(self) -> None:
        self.uri = services.postgres_uri()
        self.schema = f"conf_{uuid.uuid4().hex[:10]}"
        self._exec(f"CREATE SCHEMA {_q(self.schema)}")

    def _exec(self, sql: str, params: list[Any] | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
        import psycopg

        with psycopg.connect(self.uri, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            if cur.description is None:
                return [], []
            return [d.name for d in cur.description], cur.fetchall()

    def close(self) -> None:
        """Drop the schema."""
        self._exec(f"DROP SCHEMA IF EXISTS {_q(self.schema)} CASCADE")

    def destination_yaml(self, tmp_path: Path) -> dict[str, Any]:
        """The URI and this harness's schema."""
        return {"type": "postgresql", "connection_string": self.uri, "db_schema": self.schema}

    def table_name(self, base: str) -> str:
        """``<schema>.<base>_<unique>``."""
        return f"{self.schema}.{base}_{uuid.uuid4().hex[:8]}"

    def count(self, table: str) -> int:
        """COUNT(*) on a fresh connection."""
        return int(self._exec(f"SELECT count(*) FROM {_qualified(table)}")[1][0][0])

    def read(self, table: str) -> pa.Table:
        """The whole table as psycopg's Python values (numeric -> Decimal, jsonb -> parsed JSON, bytea -> bytes)."""
        names, rows = self._exec(f"SELECT * FROM {_qualified(table)}")
        values = [[_pg_value(r[i]) for r in rows] for i in range(len(names))]
        return pa.table({n: pa.array(v) if any(x is not None for x in v) else pa.nulls(len(v)) for n, v in zip(names, values, strict=True)})

    def column_types(self, table: str) -> dict[str, str]:
        """``format_type`` of each column, lower-case (``numeric(15,2)``, ``jsonb``...)."""
        schema, _, name = table.rpartition(".")
        _, rows = self._exec(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            [schema, name],
        )
        return {c: t.lower() for c, t in rows}

    def drop(self, table: str) -> None:
        """DROP TABLE IF EXISTS."""
        self._exec(f"DROP TABLE IF EXISTS {_qualified(table)}")


def _pg_value(value: Any) -> Any:
    """psycopg's value as the suite compares it: JSON documents as JSON text (as the other destinations hand them back)."""
    import json

    if isinstance(value, dict | list):
        return json.dumps(value)
    if isinstance(value, memoryview):
        return bytes(value)
    return value


class FilesHarness:
    """``type: parquet | csv | ndjson``: a folder per test, read back with pyarrow as a reader listing the table folder would."""

    def __init__(self, type_: str) -> None:
        self.type = type_
        self.root: Path | None = None

    def destination_yaml(self, tmp_path: Path) -> dict[str, Any]:
        """A folder ``lake`` beside the ingest.yml."""
        self.root = tmp_path / "lake"
        return {"type": self.type, "path": str(self.root)}

    def table_name(self, base: str) -> str:
        """``<base>_<unique>`` (a folder under the destination's path)."""
        return f"{base}_{uuid.uuid4().hex[:8]}"

    def files(self, table: str) -> list[Path]:
        """The table's data files (hidden and ``_`` files are not data, as for any Hive-style reader)."""
        assert self.root is not None
        folder = self.root / table
        found = folder.rglob(f"*.{self.type}*") if folder.is_dir() else []
        return sorted(p for p in found if not any(part.startswith(("_", ".")) for part in p.relative_to(folder).parts))

    def _read_file(self, path: Path) -> pa.Table:
        if self.type == "parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path)
        if self.type == "csv":
            import pyarrow.csv as pacsv

            return pacsv.read_csv(path)
        import pyarrow.json as pajson

        return pajson.read_json(path)

    def read(self, table: str) -> pa.Table:
        """Every data file of the table, concatenated."""
        tables = [self._read_file(p) for p in self.files(table)]
        return pa.concat_tables(tables, promote_options="permissive") if tables else pa.table({})

    def count(self, table: str) -> int:
        """Rows in the table's data files."""
        return self.read(table).num_rows

    def column_types(self, table: str) -> dict[str, str]:
        """Arrow type names as pyarrow reads the files."""
        return {f.name: str(f.type) for f in self.read(table).schema}

    def drop(self, table: str) -> None:
        """Remove the table folder."""
        import shutil

        assert self.root is not None
        shutil.rmtree(self.root / table, ignore_errors=True)


def _snowflake() -> Harness:
    from harness_snowflake import snowflake_harness

    return snowflake_harness()  # type: ignore[return-value]


def _bigquery() -> Harness:
    from harness_bigquery import bigquery_harness

    return bigquery_harness()  # type: ignore[return-value]


HARNESSES: dict[str, Callable[[], Harness]] = {
    "duckdb": DuckDBHarness,
    "postgresql": PostgresHarness,
    "parquet": lambda: FilesHarness("parquet"),
    "csv": lambda: FilesHarness("csv"),
    "ndjson": lambda: FilesHarness("ndjson"),
    "snowflake": _snowflake,
    "bigquery": _bigquery,
}
