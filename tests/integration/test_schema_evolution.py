"""Schema evolution against an existing DuckDB table: manual, auto, warn (SPEC section 5)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

import conduit

CONFIG = """\
sources: [{{name: files, type: csv, path: data/}}]
destinations: [{{name: local, type: duckdb, path: w.duckdb}}]
resources: [{{name: people, source: files, destination: local, path: people.csv, schema_evolution: {mode}, columns: {{id: {id_type}}}}}]
"""


def setup(tmp_path: Path, mode: str) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "people.csv").write_text("id,name\n1,a\n")
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(CONFIG.format(mode=mode, id_type="integer"))
    assert conduit.run(cfg).status == "success"
    (tmp_path / "data" / "people.csv").write_text("id,name,email\n2,b,b@x\n")
    cfg.write_text(CONFIG.format(mode=mode, id_type="bigint"))
    return cfg


def columns(db: Path) -> dict[str, str]:
    with duckdb.connect(str(db), read_only=True) as con:
        return dict(con.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'people'").fetchall())


def test_manual_fails_with_diff_and_ddl(tmp_path: Path) -> None:
    result = conduit.run(setup(tmp_path, "manual"))
    res = result.resources[0]
    assert res.status == "failed"
    assert "+ email text" in (res.error or "") and "~ id integer -> bigint" in (res.error or "")
    assert 'ALTER TABLE "main"."people" ADD COLUMN "email" VARCHAR;' in (res.error or "")
    assert columns(tmp_path / "w.duckdb") == {"id": "INTEGER", "name": "VARCHAR"}


def test_auto_adds_and_widens_and_records_a_version(tmp_path: Path) -> None:
    result = conduit.run(setup(tmp_path, "auto"))
    assert result.status == "success", result.resources[0].error
    assert columns(tmp_path / "w.duckdb") == {"id": "BIGINT", "name": "VARCHAR", "email": "VARCHAR"}
    with duckdb.connect(str(tmp_path / ".conduit" / "conduit.duckdb"), read_only=True) as con:
        versions = con.execute("SELECT version, change FROM schema_versions ORDER BY version").fetchall()
    assert [v for v, _ in versions] == [1, 2] and "+ email" in versions[1][1]


def test_warn_loads_matching_columns(tmp_path: Path) -> None:
    cfg = setup(tmp_path, "warn")
    cfg.write_text(CONFIG.format(mode="warn", id_type="integer"))
    result = conduit.run(cfg)
    assert result.status == "success", result.resources[0].error
    assert columns(tmp_path / "w.duckdb") == {"id": "INTEGER", "name": "VARCHAR"}
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        assert con.execute("SELECT id, name FROM main.people ORDER BY id").fetchall() == [(1, "a"), (2, "b")]


def test_auto_change_is_not_applied_when_the_load_fails(tmp_path: Path) -> None:
    cfg = setup(tmp_path, "auto")
    text = cfg.read_text().replace("path: people.csv", "path: people.csv, max_dlq_rows: 0")
    (tmp_path / "data" / "people.csv").write_text("id,name,email\n2,b,b@x\nnot-a-number,c,c@x\n")
    cfg.write_text(text)
    assert conduit.run(cfg).status == "failed"
    assert columns(tmp_path / "w.duckdb") == {"id": "INTEGER", "name": "VARCHAR"}


@pytest.mark.parametrize("mode", ["manual", "auto"])
def test_lossy_change_fails(tmp_path: Path, mode: str) -> None:
    cfg = setup(tmp_path, mode)
    (tmp_path / "data" / "people.csv").write_text("id,name\nx,b\n")
    cfg.write_text(CONFIG.format(mode=mode, id_type="text"))
    res = conduit.run(cfg).resources[0]
    assert res.status == "failed" and "~ id integer -> text" in (res.error or "")


# --- decimals widen losslessly: integer digits max(p1-s1, p2-s2), scale max(s1, s2) ---

DECIMALS = """\
sources: [{{name: files, type: csv, path: data/}}]
destinations: [{dest}]
resources: [{{name: amounts, source: files, destination: out, path: amounts.csv, schema_evolution: {mode}, columns: {{id: bigint, amount: '{amount}'}}}}]
"""


def load_decimals(tmp_path: Path, dest: str, mode: str, first: tuple[str, str], second: tuple[str, str]) -> conduit.RunResult:
    """Load ``first`` (type, value) as column ``amount``, then ``second`` into the same table."""
    (tmp_path / "data").mkdir(exist_ok=True)
    cfg = tmp_path / "ingest.yml"
    for i, (type_, value) in enumerate((first, second), start=1):
        (tmp_path / "data" / "amounts.csv").write_text(f"id,amount\n{i},{value}\n")
        cfg.write_text(DECIMALS.format(dest=dest, mode=mode, amount=type_))
        result = conduit.run(cfg)
        if i == 1:
            assert result.status == "success", result.resources[0].error
    return result


def duck_dest() -> str:
    return "{name: out, type: duckdb, path: w.duckdb}"


def duck_amounts(tmp_path: Path) -> tuple[str, list[tuple[object, ...]]]:
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        (type_,) = con.execute("SELECT data_type FROM information_schema.columns WHERE table_name = 'amounts' AND column_name = 'amount'").fetchall()[0]
        return type_, con.execute("SELECT id, amount::VARCHAR FROM main.amounts ORDER BY id").fetchall()


@pytest.mark.parametrize(
    ("first", "second", "widened", "values"),
    [
        pytest.param(("decimal(10,2)", "12345678.91"), ("decimal(8,4)", "1234.5678"), "DECIMAL(12,4)", ["12345678.9100", "1234.5678"], id="scale-up"),
        pytest.param(("decimal(6,4)", "12.3456"), ("decimal(12,0)", "123456789012"), "DECIMAL(16,4)", ["12.3456", "123456789012.0000"], id="integer-digits-up"),
        pytest.param(("decimal(10,2)", "12345678.91"), ("decimal(12,2)", "1234567890.12"), "DECIMAL(12,2)", ["12345678.91", "1234567890.12"], id="precision-up"),
    ],
)
def test_auto_widens_decimals_losslessly_duckdb(tmp_path: Path, first: tuple[str, str], second: tuple[str, str], widened: str, values: list[str]) -> None:
    result = load_decimals(tmp_path, duck_dest(), "auto", first, second)
    assert result.status == "success", result.resources[0].error
    assert duck_amounts(tmp_path) == (widened, [(1, values[0]), (2, values[1])])


def test_a_decimal_widening_past_the_destinations_precision_fails_cleanly(tmp_path: Path) -> None:
    result = load_decimals(tmp_path, duck_dest(), "auto", ("decimal(38,0)", "1"), ("decimal(10,4)", "1.2345"))
    res = result.resources[0]
    assert res.status == "failed"
    assert "~ amount decimal(38,0) -> decimal(42,4)" in (res.error or "") and "needs 42 digits; this destination's decimals hold 38" in (res.error or "")
    assert duck_amounts(tmp_path) == ("DECIMAL(38,0)", [(1, "1")])


def test_manual_mode_shows_the_widening_ddl(tmp_path: Path) -> None:
    result = load_decimals(tmp_path, duck_dest(), "manual", ("decimal(10,2)", "1.5"), ("decimal(8,4)", "1.2345"))
    res = result.resources[0]
    assert res.status == "failed"
    assert 'ALTER TABLE "main"."amounts" ALTER COLUMN "amount" SET DATA TYPE DECIMAL(12,4);' in (res.error or "")


@pytest.mark.postgres
def test_auto_widens_decimals_losslessly_postgres(tmp_path: Path, pg_uri: str, pg_schema: str) -> None:
    import adbc_driver_postgresql.dbapi as pg

    dest = f"{{name: out, type: postgresql, connection_string: '{pg_uri}', db_schema: {pg_schema}}}"
    result = load_decimals(tmp_path, dest, "auto", ("decimal(6,4)", "12.3456"), ("decimal(12,0)", "123456789012"))
    assert result.status == "success", result.resources[0].error
    with pg.connect(pg_uri, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("SELECT numeric_precision, numeric_scale FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'amounts' AND column_name = 'amount'", [pg_schema])
        assert cur.fetchall() == [(16, 4)]
        cur.execute(f'SELECT id, amount::text FROM "{pg_schema}".amounts ORDER BY id')
        assert cur.fetchall() == [(1, "12.3456"), (2, "123456789012.0000")]


@pytest.mark.postgres
def test_postgres_widens_decimals_past_38_digits(tmp_path: Path, pg_uri: str, pg_schema: str) -> None:
    import adbc_driver_postgresql.dbapi as pg

    dest = f"{{name: out, type: postgresql, connection_string: '{pg_uri}', db_schema: {pg_schema}}}"
    result = load_decimals(tmp_path, dest, "auto", ("decimal(38,0)", "12345678901234567890123456789012345678"), ("decimal(10,4)", "1.2345"))
    assert result.status == "success", result.resources[0].error
    with pg.connect(pg_uri, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("SELECT numeric_precision, numeric_scale FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'amounts' AND column_name = 'amount'", [pg_schema])
        assert cur.fetchall() == [(42, 4)]
        cur.execute(f'SELECT id, amount::text FROM "{pg_schema}".amounts ORDER BY id')
        assert cur.fetchall() == [(1, "12345678901234567890123456789012345678.0000"), (2, "1.2345")]
