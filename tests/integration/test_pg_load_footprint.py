"""What a load into PostgreSQL keeps resident: it must not load the ADBC driver (~30 MiB).

The destination talks to the server through psycopg only (COPY streams and the main
connection, whose ``RawCursor`` takes the ``$1`` statements), so a fresh interpreter
that runs a CSV -> PostgreSQL load never imports ``adbc_driver_postgresql``. Rows are
counted independently with psycopg.
"""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]


def test_a_postgresql_load_does_not_import_adbc(tmp_path: Path, pg_uri: str, pg_schema: str) -> None:
    (tmp_path / "rows.csv").write_text("id,name,amount\n" + "".join(f"{i},n{i},{i}.25\n" for i in range(1, 2001)))
    (tmp_path / "ingest.yml").write_text(
        f"state_path: {tmp_path / 'state.duckdb'}\n"
        f"sources: [{{name: files, type: csv, path: {tmp_path}}}]\n"
        f"destinations: [{{name: pg, type: postgresql, connection_string: '{pg_uri}', db_schema: {pg_schema}}}]\n"
        "resources: [{name: rows, source: files, destination: pg, path: rows.csv, columns: {amount: 'decimal(10,2)'}}]\n"
    )
    code = f"import sys, conduit\nresult = conduit.run({str(tmp_path / 'ingest.yml')!r})\nassert result.exit_code == 0, result\nprint(sorted(m for m in sys.modules if m.startswith('adbc_driver')))\n"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
    with psycopg.connect(pg_uri) as conn:
        count, total = conn.execute(f'SELECT count(*), sum(amount) FROM "{pg_schema}".rows').fetchone()  # type: ignore[misc]
    assert count == 2000
    assert total == Decimal("2001500.00")
