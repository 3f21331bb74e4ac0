"""Generated Snowflake and BigQuery SQL, pinned by golden files (tests/golden/warehouse/).

These cover statements the local stand-ins cannot run (Snowflake's ``SWAP WITH``,
BigQuery's BIGNUMERIC) as well as the ones they can. Regenerate after an intended change
with ``CONDUIT_UPDATE_GOLDEN=1 pytest tests/unit/test_warehouse_sql.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pytest

from conduit.connectors.warehouses import bigquery_sql as bq
from conduit.connectors.warehouses import snowflake_sql as sf
from conduit.errors import DestinationError

GOLDEN = Path(__file__).parents[1] / "golden" / "warehouse"
SCHEMA = pa.schema(
    [
        ("id", pa.int64()), ("Name", pa.string()), ("amount", pa.decimal128(15, 2)), ("big", pa.decimal128(38, 12)),
        ("placed", pa.timestamp("us")), ("placed_tz", pa.timestamp("us", "UTC")), ("day", pa.date32()), ("doc", pa.string()),
        ("tags", pa.list_(pa.int64())), ("addr", pa.struct([("city", pa.string())])), ("raw", pa.binary()), ("flag", pa.bool_()),
    ]
)  # fmt: skip
COLS = [f.name for f in SCHEMA]
JSON = {"doc"}


def snowflake_sql() -> str:
    stage, target, new = '"PUBLIC"."_CONDUIT_STAGE_RUN1_R"', '"ANALYTICS"."ORDERS"', '"ANALYTICS"."_CONDUIT_NEW_RUN1_R"'
    lines = [
        f"CREATE TRANSIENT TABLE {stage} ({sf.columns_ddl(SCHEMA.append(pa.field('_conduit_seq', pa.int64())), JSON, stage=True)})",
        f"CREATE TABLE {target} ({sf.columns_ddl(SCHEMA, JSON, stage=False)})",
        sf.put("/tmp/conduit-x/part-00000.parquet", '"PUBLIC"."_CONDUIT_STAGE"', "run1_r/c0_ab12cd34"),
        sf.copy_into(stage, '"PUBLIC"."_CONDUIT_STAGE"', "run1_r/c0_ab12cd34"),
        sf.insert_select(target, stage, COLS, JSON),
        sf.merge(target, stage, COLS, ["id"], JSON, "_conduit_seq"),
        *sf.replace_statements(target, new, "conduit load run1_r"),
    ]
    return ";\n".join(lines) + ";\n"


def bigquery_sql() -> str:
    target = "`p`.`ds`.`orders`"
    source = bq.union(["`p`.`ds`.`_conduit_stage_run1_r_c0`", "`p`.`ds`.`_conduit_stage_run1_r_c1`"])
    lines = [
        "-- schema: " + ", ".join(f"{f.name} {bq.field_type(f.type, f.name in JSON)}" for f in SCHEMA),
        bq.create_as(target, source, COLS, JSON, replace=False),
        bq.create_as(target, source, COLS, JSON, replace=True),
        bq.insert(target, source, COLS, JSON),
        bq.merge(target, source, COLS, ["id"], JSON, "_conduit_seq"),
    ]
    return ";\n".join(lines) + ";\n"


@pytest.mark.parametrize("name, render", [pytest.param("snowflake.sql", snowflake_sql, id="snowflake"), pytest.param("bigquery.sql", bigquery_sql, id="bigquery")])
def test_generated_sql_matches_golden(name: str, render: object) -> None:
    text = render()  # type: ignore[operator]
    path = GOLDEN / name
    if os.environ.get("CONDUIT_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()


@pytest.mark.parametrize(
    "arrow, expected",
    [
        pytest.param(pa.decimal128(15, 2), "NUMBER(15,2)", id="decimal-exact"),
        pytest.param(pa.timestamp("us"), "TIMESTAMP_NTZ(6)", id="naive-ntz"),
        pytest.param(pa.timestamp("ns", "Europe/Paris"), "TIMESTAMP_TZ(9)", id="zoned-tz"),
        pytest.param(pa.struct([("a", pa.int8())]), "VARIANT", id="struct-variant"),
        pytest.param(pa.int32(), "NUMBER(10,0)", id="int32"),
        pytest.param(pa.uint64(), "NUMBER(20,0)", id="uint64"),
        pytest.param(pa.binary_view(), "BINARY", id="binary-view"),
    ],
)
def test_snowflake_types(arrow: pa.DataType, expected: str) -> None:
    assert sf.sql_type(arrow) == expected


@pytest.mark.parametrize(
    "arrow, expected",
    [
        pytest.param(pa.decimal128(38, 9), "NUMERIC", id="numeric-max"),
        pytest.param(pa.decimal128(30, 10), "BIGNUMERIC", id="scale-over-9"),
        pytest.param(pa.decimal128(38, 0), "BIGNUMERIC", id="int-digits-over-29"),
        pytest.param(pa.timestamp("us"), "DATETIME", id="naive-datetime"),
        pytest.param(pa.timestamp("us", "UTC"), "TIMESTAMP", id="zoned-timestamp"),
        pytest.param(pa.list_(pa.string()), "STRING", id="list-items"),
        pytest.param(pa.string_view(), "STRING", id="string-view"),
        pytest.param(pa.binary_view(), "BYTES", id="binary-view"),
    ],
)
def test_bigquery_types(arrow: pa.DataType, expected: str) -> None:
    assert bq.field_type(arrow) == expected


def test_snowflake_identifiers_round_trip() -> None:
    for name in ("order_id", "Order Id", "camelCase", 'we"ird'):
        assert sf.arrow_name(sf.name(name)) == name
    assert sf.ident('we"ird') == '"we""ird"'


def test_out_of_range_decimals_are_one_line_errors() -> None:
    with pytest.raises(DestinationError, match="precision up to 38"):
        sf.sql_type(pa.decimal256(50, 2))
    with pytest.raises(DestinationError, match="BIGNUMERIC"):
        bq.field_type(pa.decimal256(76, 40))
