"""ingest.yml errors name the key path and line; variables expand; references resolve."""

from __future__ import annotations

from pathlib import Path

import pytest

from conduit.errors import ConfigError
from conduit.project import load_project

BASE = """\
sources:
  - name: files
    type: csv
    path: data/
destinations:
  - name: local
    type: duckdb
resources:
  - name: orders
    source: files
    destination: local
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(BASE + "    writ_mode: append\n", "ingest.yml:12: resources[0].writ_mode: unknown key (did you mean 'write_mode'?)", id="typo-resource-key"),
        pytest.param(BASE.replace("    path: data/", "    pth: data/"), "ingest.yml:4: sources[0].pth: unknown key (did you mean 'path'?)", id="typo-connector-key"),
        pytest.param(BASE + "    write_mode: apend\n", "ingest.yml:12: resources[0].write_mode: Input should be 'append', 'replace' or 'merge' (got 'apend')", id="bad-literal"),
        pytest.param(BASE.replace("type: duckdb", "type: duckbd"), "ingest.yml:7: destinations[0].type: unknown connector type 'duckbd' (did you mean 'duckdb'?)", id="unknown-type"),
        pytest.param(BASE.replace("    source: files", "    source: filez"), "ingest.yml:10: resources[0].source: unknown source 'filez' (did you mean 'files'?); known: files", id="unknown-source"),
        pytest.param(BASE + "    write_mode: merge\n", "ingest.yml:12: resources[0].write_mode: write_mode merge needs primary_keys", id="merge-without-keys"),
        pytest.param(BASE.replace("path: data/", "path: ${NOPE_NOT_SET}/x"), "ingest.yml:4: sources[0].path: environment variable NOPE_NOT_SET is not set", id="unset-variable"),
        pytest.param(BASE + "  - name: orders\n    source: files\n    destination: local\n", "ingest.yml:12: resources[1].name: duplicate name 'orders'", id="duplicate-resource"),
        pytest.param(BASE + "sorces: []\n", "ingest.yml:12: sorces: unknown key (did you mean 'sources'?)", id="typo-top-level"),
        pytest.param(BASE.replace("    type: csv\n", "    type: csv\n    options: {delimter: ';'}\n"), "ingest.yml:4: sources[0].options.delimter: unknown key (did you mean 'delimiter'?)", id="typo-csv-option"),
        pytest.param("sources: [\n", "ingest.yml:2: invalid YAML: expected the node content", id="bad-yaml"),
    ],
)
def test_config_error_names_key_and_line(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "ingest.yml").write_text(text)
    with pytest.raises(ConfigError) as err:
        load_project(tmp_path / "ingest.yml")
    assert str(err.value).startswith(expected)
    assert err.value.exit_code == 2


def test_variables_from_env_dotenv_and_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FROM_ENV", "env_dir")
    (tmp_path / ".env").write_text("FROM_DOTENV=dot_table\nFROM_ENV=ignored_env_wins\n")
    text = BASE.replace("path: data/", "path: ${FROM_ENV}") + "    table: ${FROM_DOTENV}\n    batch_size: ${BATCH:-1000}\n"
    (tmp_path / "ingest.yml").write_text(text)
    project = load_project(tmp_path / "ingest.yml")
    assert project.source("files").options["path"] == "env_dir"
    opts = project.table_options(project.config.resources[0])
    assert (opts.table, opts.batch_size) == ("dot_table", 1000)


def test_destination_defaults_lose_to_resource(tmp_path: Path) -> None:
    text = BASE.replace("    type: duckdb\n", "    type: duckdb\n    write_mode: replace\n    batch_size: 10\n") + "    batch_size: 20\n"
    (tmp_path / "ingest.yml").write_text(text)
    project = load_project(tmp_path / "ingest.yml")
    opts = project.table_options(project.config.resources[0])
    assert (opts.write_mode, opts.batch_size) == ("replace", 20)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_project(tmp_path / "nope.yml")


def test_password_never_in_config_errors(tmp_path: Path) -> None:
    text = BASE.replace("    type: duckdb\n", "    type: duckdb\n    bogus: postgresql://u:hunter22@h/db\n")
    (tmp_path / "ingest.yml").write_text(text)
    with pytest.raises(ConfigError) as err:
        load_project(tmp_path / "ingest.yml")
    assert "hunter22" not in str(err.value)
