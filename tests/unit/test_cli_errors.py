"""Operator-facing errors of the CLI: one line naming what is wrong, and the exit code the docs promise."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from conduit.cli import main

CONFIG = """version: 1
state_path: {state}
sources:
  - name: files
    type: csv
    path: data/
destinations:
  - name: local
    type: duckdb
    path: {wh}
resources:
  - name: events
    source: files
    {dest_key}: local
"""


def _project(tmp_path: Path, dest_key: str = "destination") -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.csv").write_text("id\n1\n2\n")
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(CONFIG.format(state=tmp_path / "s.duckdb", wh=tmp_path / "w.duckdb", dest_key=dest_key))
    return cfg


def _main(*args: str) -> int:
    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_a_misspelt_key_is_named_with_a_suggestion(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _project(tmp_path, dest_key="destinaton")
    assert _main("validate", str(cfg)) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: ingest.yml:14: resources[0].destinaton: unknown key (did you mean 'destination'?)"


def test_state_reset_of_an_unknown_resource_exits_2_and_touches_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _project(tmp_path)
    assert _main("run", str(cfg), "--no-progress") == 0
    capsys.readouterr()
    assert _main("state", "reset", "nosuch", "--config", str(cfg)) == 2
    assert capsys.readouterr().err.strip() == "error: unknown resource 'nosuch' (resources: events)"
    with duckdb.connect(str(tmp_path / "s.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM runs WHERE status = 'success'").fetchone() == (1,)


def test_state_reset_of_a_configured_resource_succeeds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _project(tmp_path)
    assert _main("state", "reset", "events", "--config", str(cfg)) == 0
    assert capsys.readouterr().out.strip() == "events: no state stored"


BLOCK_DRIVERS = """
import importlib.abc, sys
class _Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {'adbc_driver_postgresql', 'psycopg'}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, _Missing())
"""


def test_a_missing_extra_names_the_pip_install_before_anything_runs(tmp_path: Path) -> None:
    import subprocess
    import sys

    cfg = _project(tmp_path)
    cfg.write_text(cfg.read_text().replace("destinations:\n", "destinations:\n  - name: pg\n    type: postgresql\n    connection_string: postgresql://postgres@127.0.0.1:5432/test\n"))
    code = BLOCK_DRIVERS + "from conduit.cli import entry; sys.argv = ['conduit', 'run', sys.argv[1], '--no-progress']; entry()"
    out = subprocess.run([sys.executable, "-c", code, str(cfg)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == "error: ingest.yml:9: destinations[0].type: connector 'postgresql' needs an extra package: adbc_driver_postgresql (pip install 'conduit-load[postgresql]')"
    with duckdb.connect(str(tmp_path / "s.duckdb")) as con:  # nothing ran: no run recorded, events not loaded
        assert con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'runs'").fetchone() == (0,)


def _merge_on(tmp_path: Path, key: str) -> Path:
    cfg = _project(tmp_path)
    cfg.write_text(cfg.read_text() + f"    write_mode: merge\n    primary_keys: [{key}]\n")
    return cfg


def test_validate_finds_a_merge_key_that_is_not_a_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _merge_on(tmp_path, "idd")
    assert _main("validate", str(cfg)) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: ingest.yml:16: resources[0].primary_keys: idd is not a column of events (columns: id)"
    assert not (tmp_path / "w.duckdb").exists() or duckdb.connect(str(tmp_path / "w.duckdb")).execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'events'").fetchone() == (0,)


def test_a_run_merging_on_a_missing_key_fails_before_staging_with_one_line(tmp_path: Path) -> None:
    import conduit

    cfg = _merge_on(tmp_path, "idd")
    result = conduit.run(cfg)
    assert result.status == "failed"
    assert result.resources[0].error == "events: primary_keys: idd is not a column of events (columns: id)"
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name LIKE '%events%'").fetchone() == (0,)
    with duckdb.connect(str(tmp_path / "s.duckdb"), read_only=True) as con:
        assert con.execute("SELECT error FROM resource_runs").fetchall() == [(result.resources[0].error,)]


def test_validate_finds_a_glob_that_matches_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _project(tmp_path)
    cfg.write_text(cfg.read_text() + '    path: "nomatch*.csv"\n')
    assert _main("validate", str(cfg)) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: ingest.yml:12: resources[0]: events: no csv files match {tmp_path}/data/nomatch*.csv"
