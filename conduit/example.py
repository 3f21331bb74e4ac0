"""``conduit init``: a small working project with generated sample data.

Beside ``ingest.yml`` goes ``ingest.schema.json`` (:mod:`conduit.json_schema`), which the
config names on its first line so editors validate and complete it.

The data is made on the spot with Polars (no download): customers as CSV (with two
deliberately bad rows, to show the dead-letter store) and orders as Parquet.

Examples
--------
>>> import tempfile, pathlib
>>> path = write_example(pathlib.Path(tempfile.mkdtemp()), rows=100)
>>> path.name, sorted(p.name for p in (path.parent / "data").iterdir())
('ingest.yml', ['customers.csv', 'orders.parquet'])
>>> (path.parent / "ingest.schema.json").is_file()
True
"""

from __future__ import annotations

from pathlib import Path

from conduit import json_schema
from conduit.errors import UsageError

CONFIG = """\
# yaml-language-server: $schema=ingest.schema.json
# Conduit example project: `conduit run` loads data/ into warehouse.duckdb.
version: 1
state_path: .conduit/conduit.duckdb

sources:
  - name: landing
    type: csv
    path: data/
  - name: landing_parquet
    type: parquet
    path: data/

destinations:
  - name: local
    type: duckdb
    path: warehouse.duckdb

resources:
  - name: customers
    source: landing
    destination: local
    path: customers.csv
    write_mode: merge
    primary_keys: [c_custkey]
    columns:
      c_acctbal: decimal(15,2)
  - name: orders
    source: landing_parquet
    destination: local
    path: orders.parquet
    write_mode: replace
"""


def write_example(directory: Path, rows: int = 10_000) -> Path:
    """Write ``ingest.yml`` and ``data/`` into ``directory``; refuse to overwrite a config."""
    import polars as pl

    config = directory / "ingest.yml"
    if config.exists():
        msg = f"{config} already exists; choose an empty folder"
        raise UsageError(msg)
    (directory / "data").mkdir(parents=True, exist_ok=True)
    n = max(rows, 10)
    segments = ["BUILDING", "MACHINERY", "AUTOMOBILE", "HOUSEHOLD", "FURNITURE"]
    customers = pl.DataFrame({"c_custkey": pl.int_range(1, n + 1, eager=True)}).with_columns(
        pl.format("Customer#{}", pl.col("c_custkey").cast(pl.String).str.zfill(9)).alias("c_name"),
        ((pl.col("c_custkey") * 7919 % 1_099_999) / 100 - 999.99).round(2).cast(pl.String).alias("c_acctbal"),
        (pl.date(2024, 1, 1) + pl.duration(days=pl.col("c_custkey") % 365)).alias("c_since"),
    )
    customers = customers.with_columns(
        pl.when(pl.col("c_custkey") == 3).then(pl.lit("not-a-number")).when(pl.col("c_custkey") == 7).then(pl.lit("1e40")).otherwise(pl.col("c_acctbal")).alias("c_acctbal"),
        pl.lit(pl.Series(segments)).gather(pl.col("c_custkey") % 5).alias("c_mktsegment"),
    )
    customers.write_csv(directory / "data" / "customers.csv")
    orders = pl.DataFrame({"o_orderkey": pl.int_range(1, 3 * n + 1, eager=True)}).with_columns(
        (pl.col("o_orderkey") % n + 1).alias("o_custkey"),
        ((pl.col("o_orderkey") * 104729 % 50_000_000) / 100).cast(pl.Decimal(15, 2)).alias("o_totalprice"),
        (pl.date(2023, 1, 1) + pl.duration(days=pl.col("o_orderkey") % 700)).alias("o_orderdate"),
    )
    orders.write_parquet(directory / "data" / "orders.parquet")
    json_schema.write(directory / json_schema.FILE_NAME)  # named on the config's first line: editors validate and complete it
    config.write_text(CONFIG)
    return config
