"""PostgreSQL load scenarios: TPC-H lineitem into PostgreSQL vs ``psql \\copy``.

Each scenario's baseline is ``psql \\copy`` of the same CSV into a pre-created table,
timed in the same repetition, so ratios compare like with like on a shared machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from benchmarks.harness import Env, Scenario

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = "conduit_bench"
DDL = (
    "l_orderkey bigint, l_partkey bigint, l_suppkey bigint, l_linenumber {linenumber}, l_quantity numeric(15,2), l_extendedprice numeric(15,2), "
    "l_discount numeric(15,2), l_tax numeric(15,2), l_returnflag text, l_linestatus text, l_shipdate date, l_commitdate date, l_receiptdate date, "
    "l_shipinstruct text, l_shipmode text, l_comment text"
)


def _psql(env: Env, sql: str) -> str:
    return subprocess.run(["psql", env.pg_uri, "-v", "ON_ERROR_STOP=1", "-Atqc", sql], check=True, capture_output=True, text=True).stdout


COLUMNS = ", columns: {l_quantity: 'decimal(15,2)', l_extendedprice: 'decimal(15,2)', l_discount: 'decimal(15,2)', l_tax: 'decimal(15,2)', l_linenumber: integer}"
BATCH = int(os.environ.get("CONDUIT_BENCH_BATCH", "0"))  # 0: Conduit's default batch_size


def _prepare(fmt: str, target: str, mode: str, precreate: bool) -> object:
    def prepare(env: Env) -> None:
        _psql(env, f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        _psql(env, f"CREATE SCHEMA {SCHEMA}")
        _psql(env, f"CREATE TABLE {SCHEMA}.lineitem_base ({DDL.format(linenumber='integer')})")
        if precreate:
            _psql(env, f"CREATE TABLE {SCHEMA}.{target} ({DDL.format(linenumber='integer')})")
        source = f"{{name: files, type: {fmt}, path: {env.data / fmt}}}"
        (env.work / "ingest.yml").write_text(
            f"state_path: {env.work / 'state.duckdb'}\n"
            f"sources: [{source}]\n"
            f"destinations: [{{name: pg, type: postgresql, connection_string: '{env.pg_uri}', db_schema: {SCHEMA}}}]\n"
            f"resources: [{{name: {target}, source: files, destination: pg, path: lineitem.{fmt}, write_mode: {mode}{f', batch_size: {BATCH}' if BATCH else ''}{COLUMNS if fmt == 'csv' else ''}}}]\n"
        )

    return prepare


def _command(env: Env) -> list[str]:
    return ["env", f"PYTHONPATH={ROOT}", sys.executable, "-m", "conduit", "run", str(env.work / "ingest.yml"), "--no-progress"]


def _baseline(env: Env) -> list[str]:
    csv = env.data / "csv" / "lineitem.csv"
    return ["psql", env.pg_uri, "-v", "ON_ERROR_STOP=1", "-qc", f"\\copy {SCHEMA}.lineitem_base FROM '{csv}' WITH (FORMAT csv, HEADER true)"]


def _checkpoint(env: Env) -> None:
    """Before each timed command: write out what the previous one left dirty, so no command pays for another's WAL and buffers."""
    _psql(env, "CHECKPOINT")


def _verify(target: str) -> object:
    def verify(env: Env) -> int:
        return int(_psql(env, f"SELECT count(*) FROM {SCHEMA}.{target}").strip())

    return verify


def _scenario(name: str, fmt: str, target: str, mode: str, precreate: bool) -> Scenario:
    return Scenario(name, "psql \\copy (csv)", _prepare(fmt, target, mode, precreate), _command, _baseline, _verify(target), settle=_checkpoint)  # type: ignore[arg-type]


def _prepare_floor(env: Env) -> None:
    """The rows as a binary COPY file (written by psql from a table loaded by psql) and an empty target."""
    _prepare("csv", "lineitem_floor", "append", True)(env)
    csv = env.data / "csv" / "lineitem.csv"
    _psql(env, f"\\copy {SCHEMA}.lineitem_floor FROM '{csv}' WITH (FORMAT csv, HEADER true)")
    _psql(env, f"\\copy {SCHEMA}.lineitem_floor TO '{env.work / 'lineitem.bin'}' WITH (FORMAT binary)")
    _psql(env, f"TRUNCATE {SCHEMA}.lineitem_floor")


def _floor(env: Env) -> list[str]:
    return ["psql", env.pg_uri, "-v", "ON_ERROR_STOP=1", "-qc", f"\\copy {SCHEMA}.lineitem_floor FROM '{env.work / 'lineitem.bin'}' WITH (FORMAT binary)"]


FLOOR = Scenario(
    "floor: binary COPY of the same rows (psql, one stream; not Conduit)",
    "psql \\copy (csv)",
    _prepare_floor,
    _floor,
    _baseline,
    _verify("lineitem_floor"),  # type: ignore[arg-type]
    settle=_checkpoint,
)
"""What the server itself needs for these rows in one COPY stream, measured like the scenarios above.

Its "conduit" column is the binary ``\\copy``: the server's share of a load, with almost no
client work, so Conduit's ratios can be read against it on the machine at hand.
"""

SCENARIOS: list[Scenario] = [
    _scenario("parquet->postgres (new table)", "parquet", "lineitem_parquet", "append", False),
    _scenario("csv->postgres (new table)", "csv", "lineitem_csv", "append", False),
    _scenario("parquet->postgres (append existing)", "parquet", "lineitem_parquet", "append", True),
    _scenario("csv->postgres (append existing)", "csv", "lineitem_csv", "append", True),
    FLOOR,
]


DUCKDB_PYTHON = os.environ.get("CONDUIT_BENCH_DUCKDB_PYTHON", "")
"""A Python whose duckdb has the postgres extension (pip ``duckdb-extension-postgres-scanner`` of duckdb's version)."""

_TPCH_TYPES = "{'l_quantity': 'DECIMAL(15,2)', 'l_extendedprice': 'DECIMAL(15,2)', 'l_discount': 'DECIMAL(15,2)', 'l_tax': 'DECIMAL(15,2)', 'l_linenumber': 'INTEGER'}"


def _duckdb_command(fmt: str, target: str) -> object:
    def command(env: Env) -> list[str]:
        path = env.data / fmt / f"lineitem.{fmt}"
        read = f"read_parquet('{path}')" if fmt == "parquet" else f"read_csv('{path}', header=true, types={_TPCH_TYPES})"
        code = (
            "import duckdb, pathlib, duckdb_extension_postgres_scanner as e\n"
            "ext = next(pathlib.Path(e.__file__).parent.glob('extensions/*/postgres_scanner.duckdb_extension'))\n"
            "c = duckdb.connect()\n"
            "c.execute(f\"LOAD '{ext}'\")\n"
            f"c.execute(\"ATTACH '{env.pg_uri}' AS pg (TYPE postgres)\")\n"
            f'c.execute("CREATE TABLE pg.{SCHEMA}.{target} AS SELECT * FROM {read}")\n'
        )
        return [DUCKDB_PYTHON, "-c", code]

    return command


def _duckdb_scenario(fmt: str) -> Scenario:
    target = f"lineitem_duckdb_{fmt}"
    return Scenario(
        f"duckdb+postgres extension: {fmt} (new table; not Conduit)",
        "psql \\copy (csv)",
        _prepare(fmt, target, "append", False),  # type: ignore[arg-type]
        _duckdb_command(fmt, target),  # type: ignore[arg-type]
        _baseline,
        _verify(target),  # type: ignore[arg-type]
        settle=_checkpoint,
    )


if DUCKDB_PYTHON:
    SCENARIOS += [_duckdb_scenario("parquet"), _duckdb_scenario("csv")]
