"""Rows with a NUL in a text column a destination cannot store: found by a scan of the exported batch's bytes."""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import pytest

from conduit.coerce import Coercer
from conduit.connectors.base import ROW_NUMBER, SEQ
from conduit.text_nul import holds_nul
from conduit.transform import Bad, Transform

SCHEMA = pa.schema([("id", pa.int64()), ("note", pa.large_string()), ("tag", pa.large_string())])


def _frame(notes: list[str | None]) -> pl.DataFrame:
    n = len(notes)
    return pl.DataFrame({"id": [str(i) for i in range(n)], "note": notes, "tag": ["t"] * n, ROW_NUMBER: list(range(1, n + 1))})


def _no_checks(df: pl.DataFrame) -> tuple[pl.DataFrame, list[Bad], dict[str, int]]:
    return df, [], {}


@pytest.mark.parametrize("checks", [None, _no_checks], ids=["scan-after-export", "split-before-checks"])
@pytest.mark.parametrize("add_seq", [False, True])
def test_rows_with_nul_are_bad_rows_whichever_way_they_are_found(checks: object, add_seq: bool) -> None:
    schema = SCHEMA.append(pa.field(SEQ, pa.int64())) if add_seq else SCHEMA
    transform = Transform(Coercer({"id": pl.Int64()}), schema, checks=checks, add_seq=add_seq, nul_columns=["note", "tag"], destination="pg")  # type: ignore[arg-type]
    good, bad, _, _ = transform(_frame(["a", "b\x00c", None, "d"]), 1)
    assert good.column("id").to_pylist() == [0, 2, 3]
    assert good.schema == schema
    if add_seq:
        assert good.column(SEQ).to_pylist() == [(1 << 40) + 1, (1 << 40) + 3, (1 << 40) + 4]
    assert [b.check for b in bad] == ["nul"]
    assert bad[0].rows.get_column(ROW_NUMBER).to_list() == [2]
    assert bad[0].error.to_list() == ["NUL byte in column note (destination pg cannot store it in text)"]


def test_batch_without_nul_passes_whole() -> None:
    transform = Transform(Coercer({"id": pl.Int64()}), SCHEMA, nul_columns=["note", "tag"], destination="pg")
    good, bad, _, _ = transform(_frame(["a", None, "", "x" * 100]), 0)
    assert good.num_rows == 4
    assert bad == []


@pytest.mark.parametrize("kind", [pa.string(), pa.large_string(), pa.string_view()])
def test_holds_nul_sees_only_the_values_of_a_slice(kind: pa.DataType) -> None:
    arr = pa.array(["abc", "long enough to leave the view\x00", None, "z", "\x00"], kind)
    assert holds_nul(arr)
    assert not holds_nul(arr.slice(0, 1))
    assert holds_nul(arr.slice(1, 1))
    assert not holds_nul(arr.slice(2, 2))
    assert holds_nul(arr.slice(3))
    assert not holds_nul(arr.slice(5))
    assert holds_nul(pa.chunked_array([arr.slice(0, 1), arr.slice(4)]))
