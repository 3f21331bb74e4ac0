"""Parquet row groups: strings decoded straight into the layout the next cast wants, when the file allows it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conduit.connectors.files.row_groups import RowGroups

PLAIN = pa.schema([("id", pa.int64()), ("name", pa.large_string()), ("blob", pa.large_binary())])


def _write(path: Path, extra: dict[str, pa.Array] | None = None) -> pa.Table:
    table = pa.table(
        {
            "id": pa.array(range(1000), pa.int64()),
            "name": pa.array([None if i % 9 == 0 else f"näme {i}" * (i % 4) for i in range(1000)], pa.string_view()),
            "blob": pa.array([bytes([i % 256]) * (i % 5) for i in range(1000)], pa.binary_view()),
            **(extra or {}),
        }
    )
    pq.write_table(table, path, row_group_size=300)
    return table


def _read(path: Path, want: pa.Schema | None, skip: int = 0) -> tuple[int, pa.Table]:
    groups = RowGroups(fsspec.filesystem("file"), str(path))
    before, batches = groups.batches(skip, 128, want)
    return before, pa.Table.from_batches(list(batches))


def test_views_in_the_file_come_as_large_strings_when_wanted(tmp_path: Path) -> None:
    table = _write(tmp_path / "t.parquet")
    before, got = _read(tmp_path / "t.parquet", PLAIN, skip=450)
    assert before == 300  # from the row group holding row 451
    assert got.schema.field("name").type == pa.large_string() and got.schema.field("blob").type == pa.large_binary()
    assert got.to_pylist() == table.slice(300).to_pylist()


@pytest.mark.parametrize(
    ("want", "extra"),
    [
        pytest.param(None, None, id="no-wish"),
        pytest.param(pa.schema([("id", pa.int64()), ("name", pa.string_view()), ("blob", pa.binary_view())]), None, id="views-wanted"),
        pytest.param(PLAIN, {"at": pa.array([dt.datetime(2020, 1, 1, tzinfo=dt.UTC)] * 1000, pa.timestamp("us", "Europe/Paris"))}, id="zone-only-in-stored-schema"),
        pytest.param(PLAIN, {"took": pa.array([dt.timedelta(seconds=1)] * 1000, pa.duration("s"))}, id="duration-only-in-stored-schema"),
    ],
)
def test_the_stored_schema_wins_otherwise(tmp_path: Path, want: pa.Schema | None, extra: dict[str, pa.Array] | None) -> None:
    table = _write(tmp_path / "t.parquet", extra)
    _, got = _read(tmp_path / "t.parquet", want)
    assert got.schema == table.schema
    assert got.to_pylist() == table.to_pylist()
