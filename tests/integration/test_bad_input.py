"""Bad input: exit code 2 (config) or 1 (a resource failed), one line naming the cause,
and the destination left as it was."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from cli_run import invoke

CONFIG = """\
sources: [{{name: files, type: csv, path: data/}}]
destinations: [{{name: local, type: duckdb, path: {db}}}]
resources: [{{name: people, source: files, destination: local, path: {path}, write_mode: replace}}]
"""


@pytest.fixture
def loaded(tmp_path: Path) -> Path:
    """A project whose table already holds 2 rows from a good run."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "good.csv").write_text("id,name\n1,a\n2,b\n")
    (tmp_path / "ingest.yml").write_text(CONFIG.format(db="w.duckdb", path="good.csv"))
    assert invoke("run", str(tmp_path / "ingest.yml"), "--no-progress")[0] == 0
    return tmp_path


def table_rows(db: Path) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute("SELECT * FROM main.people ORDER BY id").fetchall()


@pytest.mark.parametrize(
    ("path", "content", "code", "message"),
    [
        pytest.param("missing.csv", None, 1, "no csv files match", id="missing-file"),
        pytest.param("empty.csv", "", 1, "is empty (0 bytes, no header)", id="empty-file"),
        pytest.param("header.csv", "id,name\n", 1, "no data rows in", id="header-only"),
    ],
)
def test_bad_source_files_leave_table_unchanged(loaded: Path, path: str, content: str | None, code: int, message: str) -> None:
    if content is not None:
        (loaded / "data" / path).write_text(content)
    (loaded / "ingest.yml").write_text(CONFIG.format(db="w.duckdb", path=path))
    exit_code, out = invoke("run", str(loaded / "ingest.yml"), "--no-progress")
    assert exit_code == code
    assert message in out
    assert table_rows(loaded / "w.duckdb") == [(1, "a"), (2, "b")]
    with duckdb.connect(str(loaded / ".conduit" / "conduit.duckdb"), read_only=True) as con:
        status, error = con.execute("SELECT status, error FROM resource_runs ORDER BY started_at DESC LIMIT 1").fetchone()
    assert status == "failed" and message in error


@pytest.mark.parametrize(
    ("config", "message"),
    [
        pytest.param(CONFIG.format(db="w.duckdb", path="good.csv").replace("write_mode: replace", "write_mod: replace"), "ingest.yml:3: resources[0].write_mod: unknown key (did you mean 'write_mode'?)", id="typo-key"),
        pytest.param(CONFIG.format(db='"${NOT_SET_ANYWHERE}"', path="good.csv"), "environment variable NOT_SET_ANYWHERE is not set", id="unset-variable"),
        pytest.param(CONFIG.format(db="w.duckdb", path="good.csv").replace("type: csv", "type: xls"), "unknown connector type 'xls'", id="unknown-type"),
        pytest.param(CONFIG.format(db="w.duckdb", path="good.csv").replace("source: files", "source: other"), "unknown source 'other'", id="unknown-source"),
    ],
)
def test_config_errors_exit_2_and_load_nothing(loaded: Path, config: str, message: str) -> None:
    (loaded / "ingest.yml").write_text(config)
    exit_code, out = invoke("run", str(loaded / "ingest.yml"), "--no-progress")
    assert exit_code == 2
    assert out.startswith("error: ") and message in out
    assert len(out.strip().splitlines()) == 1
    assert table_rows(loaded / "w.duckdb") == [(1, "a"), (2, "b")]


def run_into(tmp_path: Path, db: str) -> tuple[int, str]:
    """Run a one-file CSV project into the DuckDB file ``db`` (relative to the project)."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "good.csv").write_text("id,name\n1,a\n")
    (tmp_path / "ingest.yml").write_text(CONFIG.format(db=db, path="good.csv"))
    return invoke("run", str(tmp_path / "ingest.yml"), "--no-progress")


def test_destination_in_missing_folder(tmp_path: Path) -> None:
    exit_code, out = run_into(tmp_path, "no/such/dir/w.duckdb")
    assert exit_code == 1
    assert "folder" in out and "no/such/dir" in out and "does not exist" in out
    assert not (tmp_path / "no").exists()


def test_file_destination_in_missing_folder(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "good.csv").write_text("id\n1\n")
    (tmp_path / "ingest.yml").write_text("sources: [{name: files, type: csv, path: data/}]\ndestinations: [{name: lake, type: parquet, path: missing/lake}]\nresources: [{name: people, source: files, destination: lake, path: good.csv}]\n")
    exit_code, out = invoke("run", str(tmp_path / "ingest.yml"), "--no-progress")
    assert exit_code == 1
    assert "missing does not exist" in out
    assert not (tmp_path / "missing").exists()


def test_unknown_resource_is_usage_error(loaded: Path) -> None:
    exit_code, out = invoke("run", str(loaded / "ingest.yml"), "-r", "nope")
    assert exit_code == 2
    assert "-r nope matches no resource; resources: people" in out


def test_validate_reports_ok(loaded: Path) -> None:
    exit_code, out = invoke("validate", str(loaded / "ingest.yml"))
    assert exit_code == 0
    assert "destination local (duckdb): ok" in out


def test_duckdb_destination_on_the_store_file_is_a_config_error(tmp_path: Path) -> None:
    """The store attaches its file briefly; a destination holding the same file for the run would share it unsafely."""
    exit_code, out = run_into(tmp_path, ".conduit/conduit.duckdb")
    assert exit_code == 2
    assert "ingest.yml:2: destinations[0].path: is the store's file (state_path)" in out
    assert not (tmp_path / ".conduit" / "conduit.duckdb").exists()


def test_corrupt_parquet_source_leaves_table_unchanged(loaded: Path) -> None:
    """A file that is not Parquet: one line naming it, the loaded table as it was."""
    (loaded / "data" / "broken.parquet").write_bytes(b"not parquet at all\n" * 10)
    (loaded / "ingest.yml").write_text(CONFIG.format(db="w.duckdb", path="broken.parquet").replace("type: csv", "type: parquet"))
    exit_code, out = invoke("run", str(loaded / "ingest.yml"), "--no-progress")
    assert exit_code == 1
    assert "cannot read" in out and "broken.parquet" in out
    assert len([line for line in out.splitlines() if "cannot read" in line]) == 1
    assert table_rows(loaded / "w.duckdb") == [(1, "a"), (2, "b")]
