"""Quality checks, casts and config errors, each checked through DuckDB / the DLQ Parquet."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import conduit
from conduit.errors import ConfigError

sys.path.insert(0, str(Path(__file__).parent))
from helpers import assert_invariant, run_one

DATA = "id,code,amount,shipped,received\n" + "".join(f"{i},{'ABC'[i % 3]},{i % 7},2024-01-0{1 + i % 5},2024-01-0{3 + i % 5}\n" for i in range(1, 31))


def res(checks: str, extra: str = "") -> str:
    return "{name: t, source: f, destination: local, path: data.csv, quality_checks: [" + checks + "]" + extra + "}"


@pytest.mark.parametrize(
    ("checks", "dlq_counts", "warned"),
    [
        pytest.param("{column: code, check: enum, values: [A, B], action: dlq}", {"enum code": 10}, 0, id="enum"),
        pytest.param("{column: code, check: regex, pattern: '^[AB]$', action: dlq}", {"regex code": 10}, 0, id="regex"),
        pytest.param("{column: amount, check: range, min_value: 1, max_value: 5, action: dlq}", {"range amount": 8}, 0, id="range"),
        pytest.param("{column: amount, check: range, max_value: 5, action: dlq}", {"range amount": 4}, 0, id="range-max-only"),
        pytest.param("{column: amount, check: range, min_value: 1, action: warn}", {}, 4, id="range-warn"),
        pytest.param("{check: expression, expression: 'amount < 6 and shipped <= received', action: dlq, name: small}", {"small": 4}, 0, id="expression"),
        pytest.param("{column: code, check: unique, action: dlq}", {"unique code": 27}, 0, id="unique"),
        pytest.param("{column: [code, amount], check: unique, action: dlq}", {"unique code,amount": 9}, 0, id="unique-composite"),
        pytest.param("{column: id, check: not_null, action: dlq}", {}, 0, id="not-null-clean"),
    ],
)
def test_checks(tmp_path: Path, checks: str, dlq_counts: dict[str, int], warned: int) -> None:
    result, loaded, dlq, manifest = run_one(tmp_path, {"data.csv": DATA}, res(checks), batch_size=7)
    r = result.resources[0]
    assert r.status == ("partial_success" if dlq_counts else "success"), r.error
    assert_invariant(manifest, loaded, dlq)
    got = {} if dlq is None else dict(dlq.group_by("_conduit_check").len().iter_rows())
    assert got == dlq_counts
    assert manifest[4] == warned
    if dlq is not None:
        assert dlq["_conduit_error"].null_count() == 0


def test_unique_across_batches_and_first_row_wins(tmp_path: Path) -> None:
    data = "id,v\n" + "".join(f"{i},{i}\n" for i in range(1, 101)) + "7,dup\n1,dup\n"
    _result, loaded, dlq, manifest = run_one(tmp_path, {"data.csv": data}, "{name: t, source: f, destination: local, path: data.csv, quality_checks: [{column: id, check: unique, action: dlq}]}", batch_size=10)
    assert sorted(dlq["id"].to_list()) == ["1", "7"]
    assert "dup" not in loaded["v"].to_list()
    assert loaded["id"].n_unique() == 100
    assert_invariant(manifest, loaded, dlq)


def test_fail_action_publishes_nothing(tmp_path: Path) -> None:
    result, _loaded, _dlq, _manifest = run_one(tmp_path, {"data.csv": DATA}, res("{column: code, check: enum, values: [A, B], action: fail}"))
    r = result.resources[0]
    assert r.status == "failed" and result.exit_code == 1
    assert "check enum code failed at row 2: code: 'C' is not one of A, B" in r.error
    import duckdb

    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        assert con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 't'").fetchall()[0][0] == 0


@pytest.mark.parametrize("limit", [pytest.param(", max_dlq_rows: 5", id="rows"), pytest.param(", max_dlq_fraction: 0.1", id="fraction")])
def test_dlq_limits(tmp_path: Path, limit: str) -> None:
    result, *_ = run_one(tmp_path, {"data.csv": DATA}, res("{column: code, check: enum, values: [A, B], action: dlq}", limit))
    assert result.resources[0].status == "failed" and result.exit_code == 1
    assert "nothing published" in result.resources[0].error


@pytest.mark.parametrize(
    ("value", "declared", "reason"),
    [
        pytest.param("abc", "bigint", "column x: 'abc' is not bigint", id="bigint"),
        pytest.param("2024-13-45", "date", "column x: '2024-13-45' is not date", id="date"),
        pytest.param("1e20", "decimal(15,2)", "column x: '1e20' is not decimal(15,2)", id="decimal-overflow"),
        pytest.param("100000000000000", "decimal(15,2)", "is not decimal(15,2)", id="decimal-too-many-digits"),
        pytest.param("O", "boolean", "column x: 'O' is not boolean", id="boolean"),
    ],
)
def test_cast_failures_are_dead_letters(tmp_path: Path, value: str, declared: str, reason: str) -> None:
    data = f"id,x\n1,{'1' if declared != 'date' else '2024-01-01'}\n2,{value}\n3,\n"
    data = data.replace("\n1,1\n", "\n1,true\n") if declared == "boolean" else data
    result, loaded, dlq, manifest = run_one(tmp_path, {"data.csv": data}, "{name: t, source: f, destination: local, path: data.csv, columns: {x: '" + declared + "'}}")
    assert result.resources[0].status == "partial_success", result.resources[0].error
    assert dlq["_conduit_check"].to_list() == ["cast"]
    assert reason in dlq["_conduit_error"][0]
    assert dlq["x"].to_list() == [value]
    assert loaded.height == 2 and loaded["x"].null_count() == 1
    assert "cast x: 1" in result.resources[0].summary()
    assert_invariant(manifest, loaded, dlq)


def test_null_tokens_and_empty_text(tmp_path: Path) -> None:
    data = "id,t,n\n1,,NA\n2,NA,5\n3,x,\n"
    src = "{name: f, type: csv, path: ., options: {null_values: [NA]}}"
    _result, loaded, dlq, _manifest = run_one(tmp_path, {"data.csv": data}, "{name: t, source: f, destination: local, path: data.csv, columns: {n: bigint}}", source=src)
    assert dlq is None
    rows = sorted(loaded.rows())
    assert rows == [(1, "", None), (2, None, 5), (3, "x", None)]


def test_existing_table_types_drive_casts(tmp_path: Path) -> None:
    import duckdb

    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        con.execute("CREATE TABLE t (id BIGINT, code VARCHAR)")
    data = "id,code\n1,007\nx2,8\n"
    _result, loaded, dlq, _manifest = run_one(tmp_path, {"data.csv": data}, "{name: t, source: f, destination: local, path: data.csv}")
    assert dlq["_conduit_error"].to_list() == ["column id: 'x2' is not bigint"]
    assert loaded.rows() == [(1, "007")]


CONFIG_ERRORS = [
    pytest.param("{column: a, check: nope}", "resources[0].quality_checks[0].check: unknown check 'nope'", id="unknown-check"),
    pytest.param("{column: a, check: regex}", "resources[0].quality_checks[0]: check regex needs pattern", id="regex-no-pattern"),
    pytest.param("{column: a, check: range}", "check range needs min_value or max_value", id="range-no-bounds"),
    pytest.param("{column: a, check: enum}", "check enum needs values", id="enum-no-values"),
    pytest.param("{check: not_null}", "check not_null needs column", id="no-column"),
    pytest.param("{column: a, check: regex, pattern: '(', action: dlq}", "quality_checks[0].pattern: invalid regular expression", id="bad-regex"),
    pytest.param("{check: expression, expression: 'a >'}", "quality_checks[0].expression: invalid SQL expression", id="bad-sql"),
    pytest.param("{column: a, check: not_null, pattern: x}", "quality_checks[0].pattern: check not_null does not take pattern", id="stray-param"),
    pytest.param("{column: a, check: not_null, action: explode}", "resources[0].quality_checks[0].action", id="unknown-action"),
    pytest.param("{column: a, check: not_vectorized}", "returned bool, not a polars expression", id="not-vectorizable"),
]


@pytest.mark.parametrize(("check", "message"), CONFIG_ERRORS)
def test_config_errors(tmp_path: Path, check: str, message: str) -> None:
    (tmp_path / "data.csv").write_text("a\n1\n")
    (tmp_path / "checks.py").write_text("import conduit.quality as q\n\n@q.register('not_vectorized')\ndef nv(column, **params):\n    return True\n")
    (tmp_path / "ingest.yml").write_text("sources: [{name: f, type: csv, path: .}]\ndestinations: [{name: local, type: duckdb}]\nresources:\n  - name: t\n    source: f\n    destination: local\n    quality_checks:\n      - " + check + "\n")
    with pytest.raises(ConfigError, match=r"ingest\.yml:8: ") as err:
        conduit.run(tmp_path / "ingest.yml")
    assert message in str(err.value)
    assert err.value.exit_code == 2


def test_custom_check_from_checks_py(tmp_path: Path) -> None:
    (tmp_path / "checks.py").write_text("import polars as pl\nimport conduit.quality as q\n\n@q.register('even')\ndef even(column, **params):\n    return pl.col(column) % params.get('by', 2) == 0\n")
    _result, loaded, dlq, _manifest = run_one(tmp_path, {"data.csv": DATA}, res("{column: id, check: even, params: {by: 3}, action: dlq}"))
    assert dlq.height == 20 and set(dlq["_conduit_check"]) == {"even id"}
    assert sorted(loaded["id"].to_list()) == list(range(3, 31, 3))


def test_cli_summary_and_dlq_view(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from conduit.cli import cli

    (tmp_path / "data.csv").write_text(DATA)
    (tmp_path / "ingest.yml").write_text("sources: [{name: f, type: csv, path: .}]\ndestinations: [{name: local, type: duckdb}]\nresources:\n  - " + res("{column: code, check: enum, values: [A, B], action: dlq}") + "\n")
    out = CliRunner().invoke(cli, ["run", str(tmp_path / "ingest.yml"), "--no-progress"])
    assert out.exit_code == 0, out.output
    assert "10 dead-lettered (enum code: 10)" in out.output
    q = CliRunner().invoke(cli, ["query", "select _conduit_check, count(*) from dlq group by 1", "--config", str(tmp_path / "ingest.yml"), "--format", "csv"])
    assert "enum code,10" in q.output


def test_dead_letters_are_gathered_when_a_limit_stops_the_resource(tmp_path: Path) -> None:
    """max_dlq_rows fails the resource, but the rows that tripped it are in the DLQ file and counted."""
    rows = "".join(f"{i},{'X' if i % 100 == 0 else 'A'}\n" for i in range(1, 1001))
    resource = "{name: t, source: f, destination: local, path: d.csv, max_dlq_rows: 3, quality_checks: [{column: code, check: enum, values: [A], action: dlq}]}"
    result, loaded, dlq, manifest = run_one(tmp_path, {"d.csv": "id,code\n" + rows}, resource, batch_size=100)
    r = result.resources[0]
    assert r.status == "failed" and "max_dlq_rows=3" in (r.error or "")
    assert loaded is None
    assert dlq is not None and dlq.height >= 4
    assert set(dlq["_conduit_check"]) == {"enum code"}
    assert manifest[3] == dlq.height  # rows_dlq recorded in the store
    assert r.dlq_path and Path(r.dlq_path).exists()


def test_dead_letters_are_gathered_when_a_fail_check_stops_the_resource(tmp_path: Path) -> None:
    """A fail check deep in the file: the rows dead-lettered before it are kept for inspection."""
    rows = "".join(f"{i},{'X' if i in (5, 150) else 'A'},{'' if i == 250 else i}\n" for i in range(1, 301))
    resource = "{name: t, source: f, destination: local, path: d.csv, quality_checks: [{column: code, check: enum, values: [A], action: dlq}, {column: v, check: not_null, action: fail}]}"
    result, loaded, dlq, manifest = run_one(tmp_path, {"d.csv": "id,code,v\n" + rows}, resource, batch_size=100)
    r = result.resources[0]
    assert r.status == "failed" and "row 250" in (r.error or "")
    assert loaded is None
    assert dlq is not None and sorted(dlq["_conduit_row_number"].to_list()) == [5, 150]
    assert manifest[3] == 2
