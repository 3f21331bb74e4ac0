"""The documentation says what the code does: generated reference, valid examples, a true layout."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

import conduit
from conduit import reference

ROOT = Path(__file__).parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_configuration_reference_matches_the_models() -> None:
    committed = (ROOT / "docs" / "configuration.md").read_text()
    assert committed == reference.render(), "docs/configuration.md is stale: run `python -m conduit.reference > docs/configuration.md`"


def _yaml_blocks() -> list[pytest.param]:
    """Every ```yaml block of the docs, with its doc (for the Python blocks beside it)."""
    out = []
    for doc in DOCS:
        text = doc.read_text()
        for m in re.finditer(r"^```yaml\n(.*?)^```", text, re.S | re.M):
            line = text[: m.start()].count("\n") + 1
            out.append(pytest.param(doc, m[1], id=f"{doc.name}:{line}"))
    return out


YAML_BLOCKS = _yaml_blocks()
OTHER_FILE = re.compile(r"\A# (?P<name>[\w.-]+\.ya?ml)\b")
"""A block whose first line is ``# <file>.yaml`` (not ingest.yml) is another tool's file: it must parse, nothing more."""
SKELETON = {
    "sources": [{"name": "files", "type": "csv", "path": "data/"}],
    "destinations": [{"name": "local", "type": "duckdb"}],
}


def _in_context(block: str) -> tuple[dict[str, object], bool]:
    """The ingest.yml a block belongs in, and whether the block is a whole one.

    A whole ingest.yml (top-level keys of the config) is completed with a source and a
    destination if it lacks them; a fragment of a resource (``quality_checks``,
    ``columns``, ``write_mode`` ...) becomes the one resource of a small config.
    """
    import yaml

    from conduit.config import IngestConfig, ResourceConfig

    data = yaml.safe_load(block)
    assert isinstance(data, dict), "a YAML block in the docs is a mapping (or starts with '# <other file>.yaml')"
    if set(data) <= set(IngestConfig.model_fields):
        return {**SKELETON, **data}, "resources" in data
    unknown = set(data) - set(ResourceConfig.model_fields)
    assert not unknown, f"keys {sorted(unknown)} are neither top-level nor resource keys: show the block in its context, or start it with '# <file>.yaml'"
    return {**SKELETON, "resources": [{"name": "example", "source": "files", "destination": "local", **data}]}, False


def test_docs_have_full_ingest_yml_examples() -> None:
    whole = {p.id.split(":")[0] for p in YAML_BLOCKS if not OTHER_FILE.match(p.values[1]) and _in_context(p.values[1])[1]}
    assert whole >= {"README.md", "connectors.md"}


@pytest.mark.parametrize(("doc", "block"), YAML_BLOCKS)
def test_every_yaml_block_in_the_docs_validates_in_context(doc: Path, block: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    import yaml

    from conduit import runner

    if OTHER_FILE.match(block) and OTHER_FILE.match(block)["name"] != "ingest.yml":  # type: ignore[index]
        assert yaml.safe_load(block) is not None
        return
    # variables without a default must be set; values unlike any other text, since the config
    # registers passwords and keys as secrets to redact for the rest of the process
    for var in set(re.findall(r"\$\{(\w+)\}", block)):
        secret = f"docs-example-{var.lower()}-{uuid.uuid4().hex}"
        monkeypatch.setenv(var, f"postgresql://user:{secret}@127.0.0.1:5432/db" if var.endswith("_URL") else secret)
    config, whole = _in_context(block)
    # a whole block is checked as written (its line numbers, its quoting); a fragment inside its context
    (tmp_path / "ingest.yml").write_text(block if whole and {"sources", "destinations"} <= set(yaml.safe_load(block)) else json.dumps(config))
    for python in re.findall(r"^```python\n(.*?)^```", doc.read_text(), re.S | re.M):  # the custom checks the doc registers
        if "from conduit.quality import register" in python:
            (tmp_path / "checks.py").write_text(python)
    project = conduit.load_project(tmp_path / "ingest.yml")
    assert project.config.resources, "an example with no resources shows nothing"
    runner.plan(project, project.config.resources)  # write modes, declared types, checks: what a run checks before loading


def _modules_named(doc: str) -> set[str]:
    return set(re.findall(r"`(conduit/[\w/]+\.py)`", doc))


def test_architecture_names_every_module_and_only_existing_ones() -> None:
    named = _modules_named((ROOT / "docs" / "architecture.md").read_text())
    tree = {str(p.relative_to(ROOT)) for p in (ROOT / "conduit").rglob("*.py")}
    assert sorted(tree - named) == [], "modules missing from docs/architecture.md"
    assert sorted(named - tree) == [], "docs/architecture.md names modules that do not exist"
