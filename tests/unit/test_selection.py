"""Selecting resources: exact names, globs, ``tag:NAME``, ``--exclude``; ``conduit ls`` lists what matches."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_run import invoke

from conduit.errors import ConfigError, UsageError
from conduit.project import load_project
from conduit.selection import select

CONFIG = """\
sources:
  - {name: files, type: csv, path: data/}
destinations:
  - {name: local, type: duckdb}
resources:
  - {name: orders_eu, source: files, destination: local, tags: [orders, nightly]}
  - {name: customers, source: files, destination: local, tags: [nightly]}
  - {name: orders_us, source: files, destination: local, tags: [orders]}
  - {name: audit-log, source: files, destination: local}
"""


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    path = tmp_path / "ingest.yml"
    path.write_text(CONFIG)
    return path


def names(cfg: Path, include: list[str] | None, exclude: list[str] | None = None) -> list[str]:
    return [r.name for r in select(load_project(cfg), include, exclude)]


@pytest.mark.parametrize(
    ("include", "exclude", "expected"),
    [
        pytest.param(None, None, ["orders_eu", "customers", "orders_us", "audit-log"], id="everything"),
        pytest.param(["customers"], None, ["customers"], id="exact-name"),
        pytest.param(["orders_*"], None, ["orders_eu", "orders_us"], id="glob"),
        pytest.param(["*_u?"], None, ["orders_us"], id="glob-question-mark"),
        pytest.param(["tag:nightly"], None, ["orders_eu", "customers"], id="tag"),
        pytest.param(["tag:night*"], None, ["orders_eu", "customers"], id="tag-glob"),
        pytest.param(["orders_us", "customers"], None, ["customers", "orders_us"], id="union-in-config-order"),
        pytest.param(["tag:orders", "orders_*"], None, ["orders_eu", "orders_us"], id="overlap-once"),
        pytest.param(None, ["tag:orders"], ["customers", "audit-log"], id="exclude-only"),
        pytest.param(["tag:nightly"], ["orders_*"], ["customers"], id="include-then-exclude"),
        pytest.param(["*"], ["audit-log", "tag:nightly"], ["orders_us"], id="exclude-several"),
    ],
)
def test_select(cfg: Path, include: list[str] | None, exclude: list[str] | None, expected: list[str]) -> None:
    assert names(cfg, include, exclude) == expected


@pytest.mark.parametrize(
    ("include", "exclude", "message"),
    [
        pytest.param(["ordrs_eu"], None, "-r ordrs_eu matches no resource (did you mean 'orders_eu'?); resources: orders_eu, customers, orders_us, audit-log; tags: nightly, orders", id="typo"),
        pytest.param(["customers", "nope_*"], None, "-r nope_* matches no resource", id="one-of-several"),
        pytest.param(["tag:weekly"], None, "-r tag:weekly matches no resource; tags: nightly, orders", id="unknown-tag"),
        pytest.param(["tag:"], None, "-r tag: matches no resource", id="empty-tag"),
        pytest.param(None, ["nope"], "--exclude nope matches no resource", id="exclude-typo"),
        pytest.param(["customers"], ["tag:nightly"], "nothing left to run: --exclude removed every resource -r selected (customers)", id="all-excluded"),
    ],
)
def test_a_selector_matching_nothing_is_a_usage_error(cfg: Path, include: list[str] | None, exclude: list[str] | None, message: str) -> None:
    with pytest.raises(UsageError) as err:
        select(load_project(cfg), include, exclude)
    assert message in str(err.value)


def test_tags_are_names(tmp_path: Path) -> None:
    path = tmp_path / "ingest.yml"
    path.write_text(CONFIG.replace("tags: [orders]}", "tags: ['bad tag']}"))
    with pytest.raises(ConfigError, match=r"ingest.yml:8: resources\[2\]\.tags\[0\]: String should match pattern"):
        load_project(path)


def test_ls_lists_what_matches_without_running(cfg: Path) -> None:
    code, out = invoke("ls", str(cfg), "-r", "tag:nightly", "--exclude", "customers")
    assert (code, out) == (0, "orders_eu\n")
    assert not (cfg.parent / ".conduit").exists()  # nothing ran, no store was made


def test_ls_select_is_an_alias_of_r(cfg: Path) -> None:
    code, out = invoke("ls", str(cfg), "--select", "orders_*", "-s", "customers")
    assert (code, out.split()) == (0, ["orders_eu", "customers", "orders_us"])


def test_run_with_a_selector_matching_nothing_exits_2(cfg: Path) -> None:
    code, out = invoke("run", str(cfg), "-r", "tag:weekly", "--no-progress")
    assert code == 2
    assert out.startswith("error: -r tag:weekly matches no resource; tags: nightly, orders")
    assert not (cfg.parent / ".conduit").exists()


def test_run_loads_only_what_the_selectors_pick(tmp_path: Path) -> None:
    import duckdb

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.csv").write_text("id\n1\n2\n")
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(CONFIG.replace("destination: local", "destination: local, path: x.csv"))
    code, out = invoke("run", str(cfg), "-r", "tag:nightly", "-r", "audit-*", "--exclude", "orders_*", "--no-progress")
    assert code == 0, out
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        tables = con.execute("SELECT table_name FROM duckdb_tables() WHERE NOT starts_with(table_name, '_conduit') ORDER BY 1").fetchall()
    assert tables == [("audit-log",), ("customers",)]
