"""Targets: one ingest.yml, several places to load into (dev, prod, ...).

A target, like a dbt profile's output, changes destination settings and picks its own
local store. ``targets.<name>.destinations.<destination>`` holds keys that replace the
destination's keys of the same name (a different ``type`` replaces them all, so dev can
load into DuckDB and prod into PostgreSQL). Each target has its own store, so its own
runs, marks, checkpoints, leases and dead letters: ``targets.<name>.state_path``, by
default ``<target>.duckdb`` in the folder of the top-level ``state_path``
(``.conduit/dev.duckdb``, dead letters in ``.conduit/dev.dlq/``).

The target is ``--target`` (the ``target`` argument), else ``CONDUIT_TARGET`` (from the
environment or the ``.env``), else ``default_target``; with none, the destinations are
used as written and the store is ``state_path``. Only the chosen target's ``${VAR}``
are expanded, so prod's secrets need not be set to run dev.

Examples
--------
>>> data = {"destinations": [{"name": "wh", "type": "duckdb", "path": "base.duckdb"}], "targets": {"dev": {"destinations": {"wh": {"path": "dev.duckdb"}}}}}
>>> data, name, targets = choose(data, {}, "ingest.yml", {}, "dev")
>>> name, data["destinations"], data["state_path"]
('dev', [{'name': 'wh', 'type': 'duckdb', 'path': 'dev.duckdb'}], '.conduit/dev.duckdb')
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from conduit import _env
from conduit.config import NAME_PATTERN, IngestConfig, Lines, TargetConfig, config_error, suggest
from conduit.errors import ConfigError, UsageError

ENV = "CONDUIT_TARGET"


def choose(data: dict[str, Any], lines: Lines, fname: str, env: Mapping[str, str], requested: str | None) -> tuple[dict[str, Any], str | None, dict[str, TargetConfig]]:
    """Check ``targets``, pick one, and fold its settings into ``data`` (the parsed file, before ``${VAR}`` expansion).

    Returns the data without ``targets`` (an unchosen target is never expanded), the
    chosen target's name (or None) and every target, validated. Keys taken from the
    target keep the target's line in ``lines``, so errors point at it.

    Raises
    ------
    ConfigError
        A malformed target, one naming an unknown destination, an unknown ``default_target``.
    UsageError
        ``requested`` (or ``CONDUIT_TARGET``) names no target.
    """
    targets = _validated(data.pop("targets", None), lines, fname)
    known = list(targets)
    found = data.get("destinations")
    destinations: list[Any] = found if isinstance(found, list) else []
    names = [d.get("name") for d in destinations if isinstance(d, dict)]
    for name, target in targets.items():
        for dest, keys in target.destinations.items():
            at = ("targets", name, "destinations", dest)
            if dest not in names:
                msg = f"{fname}:{lines.get(at, 1)}: {_dotted(at)}: unknown destination {dest!r}{suggest(dest, [str(n) for n in names])}; known: {', '.join(map(str, names)) or 'none'}"
                raise ConfigError(msg)
            if "name" in keys:
                msg = f"{fname}:{lines.get((*at, 'name'), 1)}: {_dotted((*at, 'name'))}: a target cannot rename a destination"
                raise ConfigError(msg)
    default = data.get("default_target")
    if isinstance(default, str) and "${" in default:  # default_target: ${DEPLOY_ENV:-dev}
        try:
            default = data["default_target"] = _env.expand(default, env)
        except _env.UnsetVariable as exc:
            msg = f"{fname}:{lines.get(('default_target',), 1)}: default_target: environment variable {exc.args[0]} is not set (use ${{{exc.args[0]}:-default}} for a default)"
            raise ConfigError(msg) from None
    if default is not None and default not in targets:
        msg = f"{fname}:{lines.get(('default_target',), 1)}: default_target: unknown target {default!r}{suggest(str(default), known)}; {_known(known, fname)}"
        raise ConfigError(msg)
    chosen = requested or env.get(ENV) or default
    if chosen is None:
        return data, None, targets
    if chosen not in targets:
        origin = " (from CONDUIT_TARGET)" if not requested and env.get(ENV) else ""
        msg = f"unknown target {chosen!r}{origin}{suggest(chosen, known)}; {_known(known, fname)}"
        raise UsageError(msg)
    _fold(data, lines, chosen, targets[chosen], destinations)
    return data, chosen, targets


def _validated(raw: object, lines: Lines, fname: str) -> dict[str, TargetConfig]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        msg = f"{fname}:{lines.get(('targets',), 1)}: targets: a mapping of target names (dev, prod, ...) to their settings"
        raise ConfigError(msg)
    out = {}
    for name, value in raw.items():
        if not isinstance(name, str) or not re.match(NAME_PATTERN, name):
            msg = f"{fname}:{lines.get(('targets', name), 1)}: targets.{name}: a target name is letters, digits, _ and - (not starting with a digit or -)"
            raise ConfigError(msg)
        try:
            out[name] = TargetConfig.model_validate(value or {})
        except ValidationError as exc:
            raise config_error(exc, ("targets", name), lines, fname, TargetConfig) from None
    return out


def _fold(data: dict[str, Any], lines: Lines, name: str, target: TargetConfig, destinations: list[Any]) -> None:
    """Write the target's destination keys and store into ``data``; their lines follow them."""
    for dest, keys in target.destinations.items():
        i = next(i for i, d in enumerate(destinations) if isinstance(d, dict) and d.get("name") == dest)
        entry = destinations[i]
        if "type" in keys and keys["type"] != entry.get("type"):
            destinations[i] = entry = {"name": dest}
        entry.update(keys)
        _move_lines(lines, ("targets", name, "destinations", dest), ("destinations", i))
    if target.state_path is not None:
        data["state_path"] = target.state_path
        _move_lines(lines, ("targets", name, "state_path"), ("state_path",), inside=False)
    else:
        base = data.get("state_path") or IngestConfig.model_fields["state_path"].default
        data["state_path"] = posixpath.join(posixpath.dirname(str(base)), f"{name}.duckdb")


def _move_lines(lines: Lines, src: tuple[str | int, ...], dst: tuple[str | int, ...], inside: bool = True) -> None:
    """Lines of the keys under ``src`` (and ``src`` itself unless ``inside``) also under ``dst``."""
    for key, line in list(lines.items()):
        if key[: len(src)] == src and (len(key) > len(src) or not inside):
            lines[(*dst, *key[len(src) :])] = line


def _known(known: list[str], fname: str) -> str:
    return f"targets: {', '.join(known)}" if known else f"{fname} defines no targets"


def _dotted(at: tuple[str | int, ...]) -> str:
    return ".".join(str(p) for p in at)
