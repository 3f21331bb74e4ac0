"""The documentation says what the code does: generated reference, valid examples, a true layout."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

import conduit
from conduit import reference
from conduit.schema import parse_type

ROOT = Path(__file__).parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_configuration_reference_matches_the_models() -> None:
    committed = (ROOT / "docs" / "configuration.md").read_text()
    assert committed == reference.render(), "docs/configuration.md is stale: run `python -m conduit.reference > docs/configuration.md`"


def _yaml_blocks() -> list[pytest.param]:
    out = []
    for doc in DOCS:
        text = doc.read_text()
        for m in re.finditer(r"^```yaml\n(.*?)^```", text, re.S | re.M):
            if re.search(r"^version:", m[1], re.M):
                line = text[: m.start()].count("\n") + 1
                out.append(pytest.param(m[1], id=f"{doc.name}:{line}"))
    return out


YAML_BLOCKS = _yaml_blocks()


def test_docs_have_full_ingest_yml_examples() -> None:
    assert {p.id.split(":")[0] for p in YAML_BLOCKS} >= {"README.md", "connectors.md"}


@pytest.mark.parametrize("block", YAML_BLOCKS)
def test_every_ingest_yml_in_the_docs_validates(block: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # variables without a default must be set; values unlike any other text, since the config
    # registers passwords and keys as secrets to redact for the rest of the process
    for var in set(re.findall(r"\$\{(\w+)\}", block)):
        secret = f"docs-example-{var.lower()}-{uuid.uuid4().hex}"
        monkeypatch.setenv(var, f"postgresql://user:{secret}@127.0.0.1:5432/db" if var.endswith("_URL") else secret)
    (tmp_path / "ingest.yml").write_text(block)
    project = conduit.load_project(tmp_path / "ingest.yml")
    assert project.config.resources, "an example with no resources shows nothing"
    for resource in project.config.resources:  # declared types are ones Conduit knows (a run checks them later)
        for type_name in resource.columns.values():
            parse_type(type_name)


def _modules_named(doc: str) -> set[str]:
    return set(re.findall(r"`(conduit/[\w/]+\.py)`", doc))


def test_architecture_names_every_module_and_only_existing_ones() -> None:
    named = _modules_named((ROOT / "docs" / "architecture.md").read_text())
    tree = {str(p.relative_to(ROOT)) for p in (ROOT / "conduit").rglob("*.py")}
    assert sorted(tree - named) == [], "modules missing from docs/architecture.md"
    assert sorted(named - tree) == [], "docs/architecture.md names modules that do not exist"
