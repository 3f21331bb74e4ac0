"""``targets:`` pick destination settings and the store: --target, CONDUIT_TARGET, default_target."""

from __future__ import annotations

from pathlib import Path

import pytest

from conduit.errors import ConfigError, UsageError
from conduit.project import load_project

CONFIG = """\
default_target: dev
sources:
  - {name: files, type: csv, path: data/}
destinations:
  - name: warehouse
    type: duckdb
    path: base.duckdb
    db_schema: main
resources:
  - {name: orders, source: files, destination: warehouse}
targets:
  dev:
    destinations:
      warehouse: {path: dev.duckdb, db_schema: dev}
  prod:
    state_path: state/prod-store.duckdb
    destinations:
      warehouse:
        path: ${PROD_DB}
"""


@pytest.fixture(autouse=True)
def _no_target_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONDUIT_TARGET", raising=False)


def write(tmp_path: Path, text: str = CONFIG) -> Path:
    path = tmp_path / "ingest.yml"
    path.write_text(text)
    return path


def test_default_target_overrides_destination_keys_and_picks_its_store(tmp_path: Path) -> None:
    project = load_project(write(tmp_path))
    assert project.target == "dev"
    assert project.destination("warehouse").options == {"path": "dev.duckdb", "db_schema": "dev"}
    assert project.state_path == tmp_path / ".conduit" / "dev.duckdb"
    assert project.store.dlq_dir == tmp_path / ".conduit" / "dev.dlq"


def test_target_argument_wins_and_expands_only_the_chosen_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROD_DB", raising=False)
    load_project(write(tmp_path))  # dev does not need PROD_DB
    monkeypatch.setenv("PROD_DB", "prod.duckdb")
    project = load_project(write(tmp_path), target="prod")
    assert project.target == "prod"
    assert project.destination("warehouse").options == {"path": "prod.duckdb", "db_schema": "main"}  # keys not overridden stay
    assert project.state_path == tmp_path / "state" / "prod-store.duckdb"


def test_conduit_target_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROD_DB", "prod.duckdb")
    monkeypatch.setenv("CONDUIT_TARGET", "prod")
    assert load_project(write(tmp_path)).target == "prod"
    assert load_project(write(tmp_path), target="dev").target == "dev"  # --target wins over the environment


def test_an_unknown_conduit_target_says_where_it_came_from(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONDUIT_TARGET", "staging")
    with pytest.raises(UsageError, match=r"^unknown target 'staging' \(from CONDUIT_TARGET\); targets: dev, prod$"):
        load_project(write(tmp_path))


def test_default_target_may_come_from_a_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write(tmp_path, CONFIG.replace("default_target: dev", "default_target: ${DEPLOY_ENV:-dev}"))
    assert load_project(cfg).target == "dev"
    monkeypatch.setenv("DEPLOY_ENV", "prod")
    monkeypatch.setenv("PROD_DB", "p.duckdb")
    assert load_project(cfg).target == "prod"


def test_conduit_target_from_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONDUIT_TARGET", raising=False)
    (tmp_path / ".env").write_text("CONDUIT_TARGET=prod\nPROD_DB=p.duckdb\n")
    assert load_project(write(tmp_path)).target == "prod"


def test_no_target_means_the_destinations_as_written(tmp_path: Path) -> None:
    project = load_project(write(tmp_path, CONFIG.replace("default_target: dev\n", "")))
    assert project.target is None
    assert project.destination("warehouse").options == {"path": "base.duckdb", "db_schema": "main"}
    assert project.state_path == tmp_path / ".conduit" / "conduit.duckdb"


def test_a_target_changing_the_type_replaces_the_destination(tmp_path: Path) -> None:
    text = CONFIG + "  pg:\n    destinations:\n      warehouse: {type: postgresql, connection_string: 'postgresql://u@h/db', db_schema: x}\n"
    project = load_project(write(tmp_path, text), target="pg")
    dest = project.destination("warehouse")
    assert (dest.type, dest.options) == ("postgresql", {"connection_string": "postgresql://u@h/db", "db_schema": "x"})


def test_target_changes_the_config_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROD_DB", "prod.duckdb")
    cfg = write(tmp_path)
    assert load_project(cfg, target="dev").config_hash != load_project(cfg, target="prod").config_hash


@pytest.mark.parametrize(
    ("text", "target", "error", "message"),
    [
        pytest.param(CONFIG, "prd", UsageError, "unknown target 'prd' (did you mean 'prod'?); targets: dev, prod", id="unknown-target"),
        pytest.param(CONFIG.split("targets:\n")[0].replace("default_target: dev\n", ""), "dev", UsageError, "unknown target 'dev'; ingest.yml defines no targets", id="no-targets"),
        pytest.param(CONFIG.replace("default_target: dev", "default_target: stage"), None, ConfigError, "ingest.yml:1: default_target: unknown target 'stage'; targets: dev, prod", id="unknown-default"),
        pytest.param(
            CONFIG.replace("      warehouse: {path", "      warehous: {path"),
            None,
            ConfigError,
            "ingest.yml:14: targets.dev.destinations.warehous: unknown destination 'warehous' (did you mean 'warehouse'?); known: warehouse",
            id="unknown-destination",
        ),
        pytest.param(CONFIG.replace("    state_path: state", "    stat_path: state"), None, ConfigError, "ingest.yml:16: targets.prod.stat_path: unknown key (did you mean 'state_path'?)", id="typo-in-target"),
        pytest.param(CONFIG.replace("{path: dev.duckdb,", "{path: dev.duckdb, threads: many,"), None, ConfigError, "ingest.yml:14: destinations[0].threads:", id="bad-value-points-at-the-target"),
        pytest.param(CONFIG.replace("{path: dev.duckdb,", "{name: other, path: dev.duckdb,"), None, ConfigError, "ingest.yml:14: targets.dev.destinations.warehouse.name: a target cannot rename a destination", id="rename"),
        pytest.param(CONFIG.replace("  prod:", "  bad name:"), "dev", ConfigError, "ingest.yml:15: targets.bad name: a target name is letters, digits, _ and -", id="bad-name"),
    ],
)
def test_target_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, target: str | None, error: type[Exception], message: str) -> None:
    monkeypatch.setenv("PROD_DB", "prod.duckdb")
    monkeypatch.delenv("CONDUIT_TARGET", raising=False)
    with pytest.raises(error) as err:
        load_project(write(tmp_path, text), target=target)
    assert message in str(err.value)


def test_the_readme_example_validates_under_each_of_its_targets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    (block,) = [b for b in re.findall(r"^```yaml\n(.*?)^```", readme, re.S | re.M) if "targets:" in b]
    for var in set(re.findall(r"\$\{(\w+)\}", block)):
        monkeypatch.setenv(var, f"postgresql://user@127.0.0.1:5432/{var.lower()}")
    cfg = write(tmp_path, block)
    schemas = {name: load_project(cfg, target=name).destination("warehouse").options["db_schema"] for name in ("dev", "prod")}
    assert schemas == {"dev": "dev", "prod": "analytics"}
    assert load_project(cfg).target == "dev"
