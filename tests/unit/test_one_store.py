"""A run builds one Store object: every resource, its dead letters and its checkpoints share it."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

import conduit
from conduit import store as store_module

CONFIG = """
sources: [{name: files, type: csv, path: .}]
destinations: [{name: local, type: duckdb, path: out.duckdb}]
resources:
  - {name: a, source: files, destination: local, path: a.csv, quality_checks: [{column: id, check: not_null, action: dlq}]}
  - {name: b, source: files, destination: local, path: b.csv}
"""


def test_a_run_builds_one_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.csv").write_text("id,name\n1,x\n,y\n")
    (tmp_path / "b.csv").write_text("id\n1\n2\n3\n")
    (tmp_path / "ingest.yml").write_text(CONFIG)
    built: list[Path] = []
    original = store_module.Store.__init__

    def counting(self: store_module.Store, path: Path) -> None:
        built.append(path)
        original(self, path)

    monkeypatch.setattr(store_module.Store, "__init__", counting)
    result = conduit.run(tmp_path / "ingest.yml")
    assert result.status == "partial_success"
    assert [p.resolve() for p in built] == [(tmp_path / ".conduit" / "conduit.duckdb").resolve()]
    with duckdb.connect(str(tmp_path / "out.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM a").fetchone() == (1,)
        assert con.execute("SELECT count(*) FROM b").fetchone() == (3,)
