"""TPC-H lineitem (tpchgen-cli, SF 0.01) from Parquet and from CSV into DuckDB: rows and types.

The SF1 version of this check is the benchmark (``python -m benchmarks.run --sf 1``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from benchmarks.scenarios.duckdb import COLUMNS

ROWS = 60_175  # lineitem at SF 0.01


def _tpchgen() -> str:
    exe = Path(sys.executable).with_name("tpchgen-cli")
    found = str(exe) if exe.exists() else shutil.which("tpchgen-cli")
    if found is None:
        pytest.fail("tpchgen-cli is not installed (pip install -e '.[dev]')")
    return found


@pytest.fixture(scope="module")
def tpch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tpch")
    for fmt in ("parquet", "csv"):
        subprocess.run([_tpchgen(), fmt, "-s", "0.01", "-T", "lineitem", "-o", str(root / fmt)], check=True, capture_output=True)
    return root


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_lineitem_rows_and_types(tpch: Path, tmp_path: Path, fmt: str) -> None:
    import conduit

    columns = "    columns: {" + ", ".join(f'{c}: "{t}"' for c, t in COLUMNS.items()) + "}\n" if fmt == "csv" else ""
    (tmp_path / "ingest.yml").write_text(
        f"sources: [{{name: tpch, type: {fmt}, path: '{tpch / fmt}'}}]\n"
        "destinations: [{name: local, type: duckdb, path: w.duckdb}]\n"
        f"resources:\n  - name: lineitem\n    source: tpch\n    destination: local\n    path: lineitem.{fmt}\n{columns}"
    )
    result = conduit.run(tmp_path / "ingest.yml")
    assert result.status == "success", result.resources[0].error
    parquet = tpch / "parquet" / "lineitem.parquet"
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM main.lineitem").fetchall()[0][0] == ROWS
        got = con.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'lineitem' ORDER BY ordinal_position").fetchall()
        want = con.execute(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet('{parquet}'))").fetchall()
        same = con.execute(f"SELECT count(*) FROM (SELECT * FROM main.lineitem EXCEPT ALL SELECT * FROM read_parquet('{parquet}'))").fetchall()[0][0]
    assert got == want
    assert dict(want)["l_quantity"] == "DECIMAL(15,2)" and dict(want)["l_linenumber"] == "INTEGER"
    assert same == 0
