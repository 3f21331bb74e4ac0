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
