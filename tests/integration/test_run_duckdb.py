"""Files -> DuckDB end to end through the CLI; results checked with DuckDB directly."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl
import pytest
from click.testing import CliRunner

from conduit.cli import cli

CONFIG = """\
sources:
  - name: files
    type: {fmt}
    path: data/
destinations:
  - name: local
    type: duckdb
    path: out/warehouse.duckdb
resources:
  - name: people
    source: files
    destination: local
    path: "people*.{ext}"
{extra}
"""


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def query(db: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


def write_config(tmp_path: Path, fmt: str = "csv", ext: str = "csv", extra: str = "") -> Path:
    (tmp_path / "out").mkdir(exist_ok=True)
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(CONFIG.format(fmt=fmt, ext=ext, extra=extra))
    return cfg


def people(tmp_path: Path, name: str, rows: list[tuple[int, str, str]]) -> None:
    (tmp_path / "data").mkdir(exist_ok=True)
    lines = ["id,name,joined"] + [f"{i},{n},{d}" for i, n, d in rows]
    (tmp_path / "data" / name).write_text("\n".join(lines) + "\n")


def test_csv_types_inferred_and_rows_loaded(tmp_path: Path) -> None:
    people(tmp_path, "people1.csv", [(1, "Ann", "2024-01-02"), (2, "Bob", "2024-02-03")])
    people(tmp_path, "people2.csv", [(3, "Cé", "2024-03-04")])
    code, out = run_cli("run", str(write_config(tmp_path)), "--no-progress")
    assert code == 0, out
    db = tmp_path / "out" / "warehouse.duckdb"
    assert query(db, "SELECT count(*), sum(id) FROM main.people") == [(3, 6)]
    types = dict(query(db, "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'people'"))
    assert types == {"id": "BIGINT", "name": "VARCHAR", "joined": "DATE"}


def test_codes_like_O_and_F_stay_text(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "people.csv").write_text("id,flag\n1,O\n2,F\n")
    code, out = run_cli("run", str(write_config(tmp_path)), "--no-progress")
    assert code == 0, out
    db = tmp_path / "out" / "warehouse.duckdb"
    assert query(db, "SELECT flag FROM main.people ORDER BY id") == [("O",), ("F",)]


@pytest.mark.parametrize(
    ("mode", "expected_rows", "expected_names"),
    [
        pytest.param("append", 4, ["Ann", "Ann", "Bob", "Bob2"], id="append"),
        pytest.param("replace", 3, ["Ann", "Bob2", "Bobx"], id="replace"),
        pytest.param("merge", 2, ["Ann", "Bob2"], id="merge"),
    ],
)
def test_write_modes(tmp_path: Path, mode: str, expected_rows: int, expected_names: list[str]) -> None:
    extra = f"    write_mode: {mode}\n    primary_keys: [id]"
    cfg = write_config(tmp_path, extra=extra)
    people(tmp_path, "people.csv", [(1, "Ann", "2024-01-02"), (2, "Bob", "2024-02-03")])
    assert run_cli("run", str(cfg), "--no-progress")[0] == 0
    # second load: id 2 appears twice, the last one must win for merge
    people(tmp_path, "people.csv", [(1, "Ann", "2024-01-02"), (2, "Bobx", "2024-02-03"), (2, "Bob2", "2024-02-04")])
    if mode != "append":
        assert run_cli("run", str(cfg), "--no-progress")[0] == 0
    else:
        people(tmp_path, "people.csv", [(1, "Ann", "2024-01-02"), (2, "Bob2", "2024-02-04")])
        assert run_cli("run", str(cfg), "--no-progress")[0] == 0
    db = tmp_path / "out" / "warehouse.duckdb"
    names = [r[0] for r in query(db, "SELECT name FROM main.people ORDER BY name")]
    assert len(names) == expected_rows
    assert names == sorted(expected_names)


def test_parquet_types_survive(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    df = pl.DataFrame({"id": [1, 2], "amount": ["1.50", "2.25"], "ts": ["2024-01-01 10:00:00", "2024-01-02 11:00:00"]}).with_columns(
        pl.col("amount").cast(pl.Decimal(15, 2)), pl.col("ts").str.to_datetime(time_unit="us", time_zone="UTC"), pl.col("id").cast(pl.Int32)
    )
    df.write_parquet(tmp_path / "data" / "people.parquet")
    code, out = run_cli("run", str(write_config(tmp_path, "parquet", "parquet")), "--no-progress")
    assert code == 0, out
    db = tmp_path / "out" / "warehouse.duckdb"
    types = dict(query(db, "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'people'"))
    assert types == {"id": "INTEGER", "amount": "DECIMAL(15,2)", "ts": "TIMESTAMP WITH TIME ZONE"}
    assert query(db, "SELECT sum(amount)::VARCHAR FROM main.people") == [("3.75",)]


def test_ndjson_with_nested_values(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "people.ndjson").write_text('{"id": 1, "tags": ["a", "b"], "addr": {"city": "Oslo"}}\n{"id": 2, "tags": [], "addr": {"city": "Rome"}}\n')
    code, out = run_cli("run", str(write_config(tmp_path, "ndjson", "ndjson")), "--no-progress")
    assert code == 0, out
    db = tmp_path / "out" / "warehouse.duckdb"
    assert query(db, "SELECT id, len(tags), addr.city FROM main.people ORDER BY id") == [(1, 2, "Oslo"), (2, 0, "Rome")]


def test_manifest_records_the_run(tmp_path: Path) -> None:
    people(tmp_path, "people.csv", [(1, "Ann", "2024-01-02")])
    cfg = write_config(tmp_path)
    assert run_cli("run", str(cfg), "--no-progress")[0] == 0
    code, out = run_cli("query", "--config", str(cfg), "--format", "csv", "SELECT resource, status, rows_read, rows_written FROM resource_runs")
    assert code == 0
    assert out.splitlines()[1] == "people,success,1,1"
    with duckdb.connect(str(tmp_path / ".conduit" / "conduit.duckdb"), read_only=True) as con:
        assert con.execute("SELECT status FROM runs").fetchall() == [("success",)]


@pytest.mark.parametrize("fmt", ["parquet", "csv", "ndjson"])
def test_file_destinations(tmp_path: Path, fmt: str) -> None:
    people(tmp_path, "people.csv", [(1, "Ann", "2024-01-02"), (2, "Bob", "2024-02-03")])
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(f"sources: [{{name: files, type: csv, path: data/}}]\ndestinations: [{{name: lake, type: {fmt}, path: lake}}]\nresources: [{{name: people, source: files, destination: lake, path: people.csv, write_mode: replace}}]\n")
    for _ in range(2):
        code, out = run_cli("run", str(cfg), "--no-progress")
        assert code == 0, out
    files = sorted((tmp_path / "lake" / "people").glob(f"*.{fmt}"))
    assert len(files) == 1  # replace removed the first run's file
    read = {"parquet": pl.read_parquet, "csv": pl.read_csv, "ndjson": pl.read_ndjson}[fmt]
    assert read(files[0]).get_column("id").to_list() == [1, 2]
    assert not (tmp_path / "lake" / "_conduit_staging").exists() or not any((tmp_path / "lake" / "_conduit_staging").iterdir())
