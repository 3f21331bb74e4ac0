"""Quality checks overhead: lineitem Parquet -> DuckDB with 6 checks vs the same load without.

Target: the checked load takes at most 1.15x the unchecked one. Since DuckDB reads a
local Parquet file itself when nothing is checked or cast, the unchecked load no longer
passes through Arrow batches while the checked one must, so the ratio holds both the
checks and the Arrow path's own cost (1.12x before that change, 1.28x after on a slower
machine).
"""

from __future__ import annotations

import sys
from pathlib import Path

from benchmarks.harness import Env, Scenario

CHECKS = """
    quality_checks:
      - {column: l_orderkey, check: not_null, action: fail}
      - {column: [l_orderkey, l_linenumber], check: unique, action: dlq}
      - {column: l_shipmode, check: regex, pattern: '^[A-Z ]+$', action: dlq}
      - {column: l_discount, check: range, min_value: 0, max_value: 0.1, action: dlq}
      - {column: l_returnflag, check: enum, values: [A, N, R], action: dlq}
      - {check: expression, expression: 'l_shipdate <= l_receiptdate', action: warn}
"""


def _config(env: Env, checks: bool) -> Path:
    name = "checked" if checks else "plain"
    folder = env.work / name
    folder.mkdir(parents=True, exist_ok=True)
    text = (
        f"sources: [{{name: pq, type: parquet, path: {env.data / 'parquet'}}}]\n"
        f"destinations: [{{name: local, type: duckdb, path: {name}.duckdb}}]\n"
        "resources:\n"
        "  - name: lineitem\n    source: pq\n    destination: local\n    path: lineitem.parquet\n    write_mode: replace\n"
    )
    (folder / "ingest.yml").write_text(text + (CHECKS if checks else ""))
    return folder / "ingest.yml"


def _prepare(env: Env) -> None:
    _config(env, True)
    _config(env, False)


def _cmd(env: Env, checks: bool) -> list[str]:
    return [sys.executable, "-m", "conduit", "run", str(_config(env, checks)), "--no-progress"]


def _verify(env: Env) -> int:
    import duckdb

    with duckdb.connect(str(env.work / "checked" / "checked.duckdb"), read_only=True) as con:
        return int(con.execute("SELECT count(*) FROM lineitem").fetchall()[0][0])


SCENARIOS: list[Scenario] = [
    Scenario(
        name="checks_lineitem_parquet_duckdb",
        baseline_name="nochecks_lineitem_parquet_duckdb",
        prepare=_prepare,
        command=lambda env: _cmd(env, True),
        baseline=lambda env: _cmd(env, False),
        verify=_verify,
    )
]
