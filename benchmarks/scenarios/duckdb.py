"""TPC-H lineitem from Parquet, CSV and NDJSON into DuckDB, against DuckDB's own CTAS.

``verify`` opens the DuckDB file directly: the row count is returned and the column
types must equal those DuckDB reads from the Parquet file (decimal(15,2), date,
bigint, integer, varchar), for the CSV and NDJSON loads too. The NDJSON file is made
from the Parquet file on first use (decimals as strings, so no value passes through a
float) and cached beside it.
"""

from __future__ import annotations

import subprocess

from benchmarks.harness import Env, Scenario, conduit_argv, python_argv

COLUMNS = {
    "l_orderkey": "bigint",
    "l_partkey": "bigint",
    "l_suppkey": "bigint",
    "l_linenumber": "integer",
    "l_quantity": "decimal(15,2)",
    "l_extendedprice": "decimal(15,2)",
    "l_discount": "decimal(15,2)",
    "l_tax": "decimal(15,2)",
    "l_returnflag": "varchar",
    "l_linestatus": "varchar",
    "l_shipdate": "date",
    "l_commitdate": "date",
    "l_receiptdate": "date",
    "l_shipinstruct": "varchar",
    "l_shipmode": "varchar",
    "l_comment": "varchar",
}


def ensure_ndjson(env: Env) -> None:
    """lineitem.ndjson beside the Parquet file, written once by Polars in a child process.

    Not in this process: a child's peak RSS (``ru_maxrss``) starts from its parent's at
    fork, so a large harness would inflate every measurement after it.
    """
    out = env.data / "ndjson" / "lineitem.ndjson"
    if out.is_file():
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    src = env.data / "parquet" / "lineitem.parquet"
    code = f"import polars as pl\npl.scan_parquet({str(src)!r}).with_columns(pl.col(pl.Decimal).cast(pl.String)).sink_ndjson({str(tmp)!r})\n"
    subprocess.run(python_argv(code), check=True)
    tmp.rename(out)


def _config(env: Env, fmt: str) -> None:
    columns = ""
    if fmt == "ndjson":
        ensure_ndjson(env)
    if fmt in ("csv", "ndjson"):
        columns = "    columns:\n" + "".join(f'      {c}: "{t}"\n' for c, t in COLUMNS.items())
    text = f"""version: 1
state_path: .conduit/state.duckdb
sources:
  - {{name: tpch, type: {fmt}, path: "{env.data / fmt}"}}
destinations:
  - {{name: local, type: duckdb, path: conduit.duckdb}}
resources:
  - name: lineitem
    source: tpch
    destination: local
    path: lineitem.{fmt}
    write_mode: replace
{columns}"""
    path = env.work / f"{fmt}.yml"
    path.write_text(text)


def _baseline_sql(env: Env, fmt: str) -> str:
    src = env.data / fmt / f"lineitem.{fmt}"
    if fmt == "parquet":
        return f"CREATE TABLE lineitem AS SELECT * FROM read_parquet('{src}')"
    cols = ", ".join(f"'{c}': '{t.upper()}'" for c, t in COLUMNS.items())
    if fmt == "ndjson":
        return f"CREATE TABLE lineitem AS SELECT * FROM read_json('{src}', format = 'newline_delimited', columns = {{{cols}}})"
    return f"CREATE TABLE lineitem AS SELECT * FROM read_csv('{src}', header = true, columns = {{{cols}}})"


def _baseline(fmt: str):
    def argv(env: Env) -> list[str]:
        sql = _baseline_sql(env, fmt)
        code = f"import duckdb\ncon = duckdb.connect({str(env.work / 'baseline.duckdb')!r})\ncon.execute({sql!r}).fetchall()\ncon.close()\n"
        return python_argv(code)

    return argv


def verify(env: Env) -> int:
    """Rows in ``main.lineitem`` of conduit.duckdb; raises if a column type differs from the Parquet file's."""
    import duckdb

    parquet = env.data / "parquet" / "lineitem.parquet"
    with duckdb.connect(str(env.work / "conduit.duckdb"), read_only=True) as con:
        got = con.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'lineitem' ORDER BY ordinal_position").fetchall()
        want = con.execute(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet('{parquet}'))").fetchall()
        if got != want:
            diff = [(g, w) for g, w in zip(got, want, strict=False) if g != w] or [(got, want)]
            msg = f"column types differ from the Parquet file: {diff}"
            raise AssertionError(msg)
        return int(con.execute("SELECT count(*) FROM main.lineitem").fetchall()[0][0])


def _scenario(fmt: str) -> Scenario:
    return Scenario(
        name=f"lineitem_{fmt}_to_duckdb",
        baseline_name=f"duckdb CTAS read_{fmt}",
        prepare=lambda env: _config(env, fmt),
        command=lambda env: conduit_argv(env.work / f"{fmt}.yml"),
        baseline=_baseline(fmt),
        verify=verify,
    )


SCENARIOS = [_scenario("parquet"), _scenario("csv"), _scenario("ndjson")]
