"""``conduit schema-json``: the JSON Schema of ingest.yml accepts the examples and rejects what Conduit rejects."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from cli_run import invoke

from conduit import json_schema
from conduit.example import write_example

ROOT = Path(__file__).parents[2]
SCHEMA = json_schema.render()
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)


def _doc_examples() -> list[Any]:
    out = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text()
        for m in re.finditer(r"^```yaml\n(.*?)^```", text, re.S | re.M):
            if re.search(r"^version:", m[1], re.M):
                out.append(pytest.param(m[1], id=f"{doc.name}:{text[: m.start()].count(chr(10)) + 1}"))
    return out


def errors(config: dict[str, Any]) -> list[str]:
    return [e.message for e in VALIDATOR.iter_errors(config)]


def test_the_schema_is_a_valid_draft7_schema() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_example(tmp_path_factory.mktemp("example"), rows=10)


def test_the_example_project_validates(example: Path) -> None:
    assert errors(yaml.safe_load(example.read_text())) == []


@pytest.mark.parametrize("block", _doc_examples())
def test_the_docs_examples_validate(block: str) -> None:
    assert errors(yaml.safe_load(block)) == []


def test_readme_has_an_example_checked_here() -> None:
    assert any(p.id.startswith("README.md:") for p in _doc_examples())


def _typo(config: dict[str, Any], where: tuple[str | int, ...], key: str, value: object) -> dict[str, Any]:
    bad = copy.deepcopy(config)
    node: Any = bad
    for part in where:
        node = node[part]
    node[key] = value
    return bad


@pytest.mark.parametrize(
    ("where", "key", "value"),
    [
        pytest.param((), "resource", [], id="top-level"),
        pytest.param(("resources", 0), "write_mod", "append", id="resource-key"),
        pytest.param(("resources", 0), "primary_key", ["id"], id="resource-key-2"),
        pytest.param(("sources", 0), "delimter", ",", id="csv-source-key"),
        pytest.param(("sources", 0, "options"), "delimter", ",", id="csv-option"),
        pytest.param(("destinations", 0), "paths", "x.duckdb", id="duckdb-destination-key"),
        pytest.param(("destinations", 0, "retry"), "attempt", 3, id="retry-key"),
    ],
)
def test_a_typo_is_rejected(example: Path, where: tuple[str | int, ...], key: str, value: object) -> None:
    config = yaml.safe_load(example.read_text())
    config["sources"][0].setdefault("options", {})
    config["destinations"][0].setdefault("retry", {})
    assert errors(config) == []
    found = errors(_typo(config, where, key, value))
    assert found and any(repr(key) in e for e in found), found


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        pytest.param({"sources": [{"name": "s", "type": "csvv"}], "destinations": [], "resources": []}, "is not one of", id="unknown-type"),
        pytest.param({"sources": [{"name": "s", "type": "postgresql", "path": "x"}], "destinations": [], "resources": []}, "'path' was unexpected", id="key-of-another-type"),
        pytest.param({"sources": [], "destinations": [], "resources": [{"name": "r", "source": "s", "destination": "d", "write_mode": "upsert"}]}, "'upsert'", id="bad-write-mode"),
        pytest.param({"sources": [], "destinations": []}, "'resources' is a required property", id="missing-resources"),
    ],
)
def test_invalid_configs_are_rejected(config: dict[str, Any], fragment: str) -> None:
    assert any(fragment in e for e in errors(config)), errors(config)


def test_env_references_are_allowed_where_numbers_are_expected() -> None:
    config = {"sources": [], "destinations": [{"name": "pg", "type": "postgresql", "host": "${PGHOST}", "port": "${PGPORT:-5432}", "batch_size": "${BATCH}"}], "resources": []}
    assert errors(config) == []
    assert errors(_typo(config, ("destinations", 0), "port", "5432x")) != []


def test_descriptions_come_from_the_models() -> None:
    defs = SCHEMA["$defs"]
    assert defs["ResourceConfig"]["description"] == "An entry of `resources`: what to move from which source to which destination."
    assert defs["Source.csv"]["description"] == "Keys of a CSV source."


def test_cli_writes_the_schema_to_a_file_and_to_stdout(tmp_path: Path) -> None:
    code, out = invoke("schema-json", str(tmp_path / "ingest.schema.json"))
    assert code == 0, out
    assert json.loads((tmp_path / "ingest.schema.json").read_text()) == SCHEMA
    code, out = invoke("schema-json")
    assert code == 0 and json.loads(out) == SCHEMA


def test_init_writes_the_schema_and_references_it(example: Path) -> None:
    first = example.read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=ingest.schema.json"
    assert json.loads((example.parent / "ingest.schema.json").read_text()) == SCHEMA
