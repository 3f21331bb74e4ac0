"""Hostile or unusual config input (issue 17, item 7): alias bombs, secrets in errors,
key/value DSNs, identifiers longer than PostgreSQL's 63 bytes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from conduit import ConduitError, load_project


def _validate(cfg: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "conduit", "validate", str(cfg)], capture_output=True, text=True, env=dict(os.environ), timeout=120)


def test_alias_bomb_is_refused(tmp_path: Path) -> None:
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    cfg = tmp_path / "ingest.yml"
    cfg.write_text("\n".join(levels) + "\nsources: []\ndestinations: []\nresources: []\n")
    with pytest.raises(ConduitError, match="alias"):
        load_project(cfg)


def test_anchors_within_budget_still_work(tmp_path: Path) -> None:
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(
        "sources: [{name: files, type: csv, path: .}]\n"
        "destinations: [{name: local, type: duckdb, path: w.duckdb}]\n"
        "resources:\n  - {name: r0, path: r0.csv, source: &files files, destination: &local local}\n" + "".join(f"  - {{name: r{i}, path: r{i}.csv, source: *files, destination: *local}}\n" for i in range(1, 4)),
    )
    assert [r.source for r in load_project(cfg).config.resources] == ["files"] * 4


@pytest.mark.parametrize("password", ["98765432", "98765432.5", "['98765432']", "{pw: '98765432'}"])
def test_config_error_never_echoes_the_password(tmp_path: Path, password: str) -> None:
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(
        f"sources: [{{name: files, type: csv, path: .}}]\ndestinations: [{{name: pg, type: postgresql, host: 127.0.0.1, user: postgres, password: {password}}}]\nresources: [{{name: r, source: files, destination: pg, path: r.csv}}]\n",
    )
    with pytest.raises(ConduitError) as err:
        load_project(cfg)
    assert "98765432" not in str(err.value)
    assert "destinations[0]" in str(err.value)


@pytest.mark.postgres
def test_key_value_dsn_loads(tmp_path: Path, pg_uri: str, pg_schema: str) -> None:
    (tmp_path / "r.csv").write_text("id,name\n1,a\n2,b\n3,c\n")
    cfg = tmp_path / "ingest.yml"
    dsn = f"host={psycopg.conninfo.conninfo_to_dict(pg_uri).get('host', '127.0.0.1')} port=5432 dbname=test user=postgres"
    cfg.write_text(
        f'sources: [{{name: files, type: csv, path: .}}]\ndestinations: [{{name: pg, type: postgresql, connection_string: "{dsn}", db_schema: {pg_schema}}}]\nresources: [{{name: r, source: files, destination: pg, path: r.csv}}]\n',
    )
    done = subprocess.run([sys.executable, "-m", "conduit", "run", str(cfg), "--no-progress"], capture_output=True, text=True, env=dict(os.environ), timeout=120)
    assert done.returncode == 0, done.stderr
    with psycopg.connect(pg_uri) as conn:
        assert conn.execute(f'SELECT count(*), sum(id) FROM "{pg_schema}".r').fetchone() == (3, 6)


@pytest.mark.postgres
@pytest.mark.parametrize("where", ["table", "column", "resource"])
def test_identifiers_over_63_bytes_are_refused_at_validate(tmp_path: Path, pg_uri: str, pg_schema: str, where: str) -> None:
    long = "x" * 64
    table = f", table: {long}" if where == "table" else ""
    columns = f", columns: {{{long}: bigint}}" if where == "column" else ""
    name = long if where == "resource" else "r"
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(
        "sources: [{name: files, type: csv, path: .}]\n"
        f'destinations: [{{name: pg, type: postgresql, connection_string: "{pg_uri}", db_schema: {pg_schema}}}]\n'
        f"resources: [{{name: {name}, source: files, destination: pg, path: r.csv{table}{columns}}}]\n",
    )
    done = _validate(cfg)
    assert done.returncode != 0
    assert "63 bytes" in done.stderr, done.stderr
