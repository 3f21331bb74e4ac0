"""``conduit schema-json``: a JSON Schema of ingest.yml, generated from the config and connector models.

Editors validate and complete ingest.yml with it (YAML Language Server, VS Code's YAML
extension, JetBrains IDEs): ``conduit init`` writes it beside the example's ingest.yml and
names it on the file's first line::

    # yaml-language-server: $schema=ingest.schema.json

Keys, types, defaults, limits and descriptions come from :mod:`conduit.config` and from
each connector's ``Options`` model (the ones :mod:`conduit.reference` documents, plus
installed plug-ins): a source or destination entry takes the keys of its ``type``'s
connector and nothing else. A value may be a ``${VAR}`` reference wherever a number,
boolean or fixed word is expected, as ingest.yml expands them before validation.

Examples
--------
>>> schema = render()
>>> schema["$defs"]["Source.csv"]["properties"]["type"]
{'const': 'csv'}
>>> "Destination.postgresql" in schema["$defs"], schema["properties"]["resources"]["items"]
(True, {'$ref': '#/$defs/ResourceConfig'})
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from conduit.config import DestinationConfig, IngestConfig, RetryOptions, SourceConfig, TableOptions
from conduit.connectors import registry
from conduit.reference import connector_options

FILE_NAME = "ingest.schema.json"
MODELINE = "# yaml-language-server: $schema={}"
DIALECT = "http://json-schema.org/draft-07/schema#"  # what every YAML editor supports; the keywords used are all draft-07
ENV_REF = {"type": "string", "pattern": r"\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}", "description": "a ${VAR} or ${VAR:-default} reference"}
_ROLE = {"source": ("sources", SourceConfig), "destination": ("destinations", DestinationConfig)}


def render() -> dict[str, Any]:
    """The JSON Schema of ingest.yml, as a dict (built-in and installed plug-in connectors)."""
    options = _options()
    models: list[type[BaseModel]] = [IngestConfig, RetryOptions, *{m: None for _, _, m in options}]
    _, top = models_json_schema([(m, "validation") for m in models], ref_template="#/$defs/{model}")
    defs: dict[str, Any] = top["$defs"]
    names = {m: _def_name(defs, m) for m in models}
    for role, (_, base) in _ROLE.items():
        entries = [(t, m) for t, r, m in options if r == role]
        for type_, model in entries:
            defs[f"{role.title()}.{type_}"] = _entry(defs, role, type_, defs[names[model]], model)
        defs[base.__name__] = _dispatch(defs[base.__name__], role, [t for t, _ in entries])
    for model in {m: None for _, _, m in options}:  # their keys are now inside the entries
        defs.pop(names[model], None)
    for definition in defs.values():
        _describe(definition)
        for key, prop in definition.get("properties", {}).items():
            if key != "type":  # the connector is chosen by its literal name
                definition["properties"][key] = _allow_env(prop)
    root = defs.pop(IngestConfig.__name__)
    return {"$schema": DIALECT, "title": "Conduit ingest.yml", **root, "$defs": dict(sorted(defs.items()))}


def text() -> str:
    """:func:`render` as indented JSON, ending in a newline."""
    return json.dumps(render(), indent=2) + "\n"


def write(path: Path) -> Path:
    """Write the schema to ``path`` (a folder gets ``ingest.schema.json``); return the file written."""
    target = path / FILE_NAME if path.is_dir() else path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text())
    return target


def _options() -> list[tuple[str, str, type[BaseModel]]]:
    """Every role of every connector type that loads (a broken plug-in is left out, not fatal)."""
    out = []
    for type_ in sorted(registry.known()):
        try:
            out += connector_options([type_])
        except Exception:  # noqa: BLE001, S112 - a plug-in that does not import has no keys to offer
            continue
    return out


def _def_name(defs: dict[str, Any], model: type[BaseModel]) -> str:
    """The ``$defs`` key pydantic gave ``model`` (its name, or a longer one when two models share it)."""
    if model.__name__ in defs and defs[model.__name__].get("title") == model.__name__:
        return model.__name__
    return next(k for k, v in defs.items() if v.get("title") == model.__name__ and k.endswith(model.__name__))


def _entry(defs: dict[str, Any], role: str, type_: str, options: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """One ``type``'s entry of ``sources`` or ``destinations``: name, type and its connector's keys, nothing else."""
    base = defs[_ROLE[role][1].__name__]
    properties = {"name": base["properties"]["name"], "type": {"const": type_}, **options.get("properties", {})}
    if role == "destination":  # table options as defaults for its resources, and retry
        properties |= {k: v for k, v in defs[TableOptions.__name__]["properties"].items() if k not in properties}
        properties["retry"] = {"$ref": f"#/$defs/{RetryOptions.__name__}"}
    return {
        "title": f"{type_} {role}",
        "description": options.get("description") or model.__doc__ or "",
        "type": "object",
        "properties": properties,
        "required": ["name", "type", *options.get("required", [])],
        "additionalProperties": False,
    }


def _dispatch(base: dict[str, Any], role: str, types: list[str]) -> dict[str, Any]:
    """An entry of ``sources`` / ``destinations``: ``type`` picks the connector whose keys apply."""
    kind = {**base["properties"]["type"], "enum": types, "description": f"the {role} connector: {', '.join(types)}"}
    branches = [{"if": {"properties": {"type": {"const": t}}, "required": ["type"]}, "then": {"$ref": f"#/$defs/{role.title()}.{t}"}} for t in types]
    return {"title": base["title"], "description": base.get("description", ""), "type": "object", "properties": {"name": base["properties"]["name"], "type": kind}, "required": ["name", "type"], "allOf": branches}


def _describe(definition: dict[str, Any]) -> None:
    """A model's docstring, first paragraph, as plain markdown (no Sphinx roles or double backquotes)."""
    doc = definition.get("description")
    if doc:
        first = re.sub(r"\s+", " ", doc.split("\n\n")[0]).strip()
        definition["description"] = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", first).replace("``", "`")


def _allow_env(prop: dict[str, Any]) -> dict[str, Any]:
    """``prop``, also taking a ``${VAR}`` reference where it takes numbers, booleans or fixed words only."""
    branches = prop.get("anyOf", [prop])
    if any(_free_text(b) for b in branches) or not any(_scalar(b) for b in branches):
        return prop
    if "anyOf" in prop:
        return {**prop, "anyOf": [*prop["anyOf"], ENV_REF]}
    keep: dict[str, Any] = {k: prop[k] for k in ("title", "description", "default") if k in prop}
    inner = {k: v for k, v in prop.items() if k not in keep}
    return {**keep, "anyOf": [inner, ENV_REF]}


def _free_text(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "string" and not {"enum", "const", "pattern"} & schema.keys()


def _scalar(schema: dict[str, Any]) -> bool:
    return schema.get("type") in ("integer", "number", "boolean") or bool({"enum", "const"} & schema.keys())
