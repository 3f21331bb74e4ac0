"""Load a project: the ingest.yml, validated against the connector registry.

:func:`load_project` reads the file, expands ``${VAR}`` (after a ``.env`` beside it),
validates it with the models of :mod:`conduit.config`, lets each connector validate
its own keys, checks the references between entries, and returns a :class:`Project`.

Examples
--------
>>> import pathlib, tempfile
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "ingest.yml").write_text('''
... sources: [{name: files, type: csv, path: data/}]
... destinations: [{name: local, type: duckdb}]
... resources: [{name: orders, source: files, destination: local, path: "orders*.csv"}]
... ''')
>>> project = load_project(d / "ingest.yml")
>>> project.config.resources[0].name, project.table_options(project.config.resources[0]).write_mode
('orders', 'append')
>>> _ = (d / "ingest.yml").write_text("sources: []\\ndestinations: []\\nresources: []\\nsorces: 1\\n")
>>> load_project(d / "ingest.yml")
Traceback (most recent call last):
conduit.errors.ConfigError: ingest.yml:4: sorces: unknown key (did you mean 'sources'?)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from pydantic import ValidationError

from conduit import _env, _secrets, _yaml, targets
from conduit.config import DestinationConfig, IngestConfig, Lines, ResolvedTable, ResourceConfig, SourceConfig, TableOptions, config_error, dotted, suggest
from conduit.connectors import registry
from conduit.errors import ConfigError
from conduit.store import Store

if TYPE_CHECKING:
    from conduit.connectors.base import Destination, Source


@dataclass
class Project:
    """A loaded ingest.yml: the validated config, where it lives, and its local store."""

    path: Path
    config: IngestConfig
    config_hash: str
    lines: Lines
    target: str | None = None
    """The target in use (:mod:`conduit.targets`), or None."""

    @property
    def dir(self) -> Path:
        """The folder relative paths are resolved against."""
        return self.path.parent

    @property
    def state_path(self) -> Path:
        """The local store file."""
        return self.resolve(self.config.state_path)

    @cached_property
    def store(self) -> Store:
        """The local store (one object per loaded project, so per run)."""
        return Store(self.state_path)

    def resolve(self, path: str) -> Path:
        """``path`` relative to the config's folder (absolute paths stay)."""
        p = Path(os.path.expanduser(path))
        return p if p.is_absolute() else self.dir / p

    def source(self, name: str) -> SourceConfig:
        """The source called ``name``."""
        return next(s for s in self.config.sources if s.name == name)

    def destination(self, name: str) -> DestinationConfig:
        """The destination called ``name``."""
        return next(d for d in self.config.destinations if d.name == name)

    def new_source(self, name: str) -> Source:
        """A new connector for the source called ``name`` (its owner owns its connections)."""
        cfg = self.source(name)
        cls = registry.get(cfg.type).source
        assert cls is not None
        return cls(name, cls.Options.model_validate(cfg.options), self.dir)

    def new_destination(self, name: str) -> Destination:
        """A new connector for the destination called ``name`` (its owner owns its connections)."""
        cfg = self.destination(name)
        cls = registry.get(cfg.type).destination
        assert cls is not None
        return cls(name, cls.Options.model_validate(cfg.options), self.dir)

    def table_options(self, resource: ResourceConfig) -> ResolvedTable:
        """Resource options win over destination defaults, which win over built-ins."""
        dest = self.destination(resource.destination).defaults
        merged: dict[str, object] = {}
        for key in TableOptions.model_fields:
            for layer in (dest, resource):
                value = getattr(layer, key)
                if value is not None:
                    merged[key] = value
        return ResolvedTable.model_validate(merged)


def load_project(path: str | Path, target: str | None = None) -> Project:
    """Read, expand and validate an ingest.yml; raise :class:`ConfigError` naming key and line.

    ``target`` names one of its ``targets`` (else ``CONDUIT_TARGET``, else ``default_target``).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "ingest.yml"
    if not path.is_file():
        msg = f"config file not found: {path}"
        raise ConfigError(msg)
    return project_from_text(path, path.read_text(encoding="utf-8"), os.environ, target)


def project_from_text(path: Path, text: str, environ: Mapping[str, str], target: str | None = None) -> Project:
    """:func:`load_project` of ``text`` as if read from ``path``, ``${VAR}`` expanded from ``environ`` (a worker's own), under ``target``."""
    try:
        data, lines = _yaml.load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        what = getattr(exc, "problem", None) or " ".join(str(exc).split())
        msg = f"{path.name}{where}: invalid YAML: {what}"
        raise ConfigError(msg) from None
    if not isinstance(data, dict):
        msg = f"{path.name}:1: the file must be a mapping with sources, destinations and resources"
        raise ConfigError(msg)
    env = {**_env.read_dotenv(path.parent / ".env"), **environ}
    data, target, all_targets = targets.choose(data, lines, path.name, env, target)
    data = _expand(data, env, (), lines, path.name)
    try:
        config = IngestConfig.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc, (), lines, path.name, IngestConfig) from None
    config.targets = all_targets
    digest = hashlib.sha256(text.encode() + (f"\0target={target}".encode() if target else b"")).hexdigest()[:16]
    project = Project(path.resolve(), config, digest, lines, target)
    _check_connectors(project)
    _check_references(project)
    return project


def _expand(value: object, env: dict[str, str], at: tuple[str | int, ...], lines: Lines, fname: str) -> object:
    if isinstance(value, dict):
        return {k: _expand(v, env, (*at, k), lines, fname) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, env, (*at, i), lines, fname) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:
        try:
            return _env.expand(value, env)
        except _env.UnsetVariable as exc:
            msg = f"{fname}:{lines.get(at, 1)}: {dotted(at)}: environment variable {exc.args[0]} is not set (use ${{{exc.args[0]}:-default}} for a default)"
            raise ConfigError(msg) from None
    return value


def _check_connectors(project: Project) -> None:
    fname = project.path.name
    groups: list[tuple[str, list[SourceConfig] | list[DestinationConfig]]] = [
        ("sources", project.config.sources),
        ("destinations", project.config.destinations),
    ]
    for group, entries in groups:
        for i, entry in enumerate(entries):
            at: tuple[str | int, ...] = (group, i)
            try:
                connector = registry.get(entry.type)
            except ConfigError as exc:
                msg = f"{fname}:{project.lines.get((*at, 'type'), 1)}: {dotted((*at, 'type'))}: {exc}"
                raise ConfigError(msg) from None
            cls = connector.source if group == "sources" else connector.destination
            if cls is None:
                role = group[:-1]
                msg = f"{fname}:{project.lines.get((*at, 'type'), 1)}: {dotted((*at, 'type'))}: connector {entry.type!r} cannot be a {role}"
                raise ConfigError(msg)
            options = entry.options
            if isinstance(entry, DestinationConfig):
                table_keys = {k: v for k, v in (entry.model_extra or {}).items() if k in TableOptions.model_fields}
                entry.defaults = TableOptions.model_validate(table_keys)
            try:
                validated = cls.Options.model_validate(options)
            except ValidationError as exc:
                raise config_error(exc, at, project.lines, fname, cls.Options) from None
            if entry.type == "duckdb" and project.resolve(getattr(validated, "path", "")).resolve() == project.state_path.resolve():
                msg = f"{fname}:{project.lines.get((*at, 'path'), 1)}: {dotted((*at, 'path'))}: is the store's file (state_path); give the store or the database another file"
                raise ConfigError(msg)
            for key in ("password", "connection_string", "token", "secret", "private_key_passphrase"):
                value = getattr(validated, key, None)
                _secrets.register(value if key != "connection_string" else _secrets.uri_password(value or ""))
            storage = getattr(validated, "storage_options", None) or {}
            for key, value in storage.items():
                if any(w in key.lower() for w in ("secret", "token", "password")):
                    _secrets.register(value)


def _check_references(project: Project) -> None:
    cfg, fname = project.config, project.path.name
    for group in ("sources", "destinations", "resources"):
        seen: set[str] = set()
        for i, entry in enumerate(getattr(cfg, group)):
            if entry.name in seen:
                msg = f"{fname}:{project.lines.get((group, i, 'name'), 1)}: {group}[{i}].name: duplicate name {entry.name!r}"
                raise ConfigError(msg)
            seen.add(entry.name)
    names = {"source": [s.name for s in cfg.sources], "destination": [d.name for d in cfg.destinations]}
    for i, res in enumerate(cfg.resources):
        for key, known in names.items():
            ref = getattr(res, key)
            if ref not in known:
                at = ("resources", i, key)
                msg = f"{fname}:{project.lines.get(at, 1)}: {dotted(at)}: unknown {key} {ref!r}{suggest(ref, known)}; known: {', '.join(known) or 'none'}"
                raise ConfigError(msg)
        table = project.table_options(res)
        if table.write_mode == "merge" and not table.primary_keys:
            at = ("resources", i, "write_mode")
            msg = f"{fname}:{project.lines.get(at, 1)}: {dotted(at)}: write_mode merge needs primary_keys"
            raise ConfigError(msg)
        if res.incremental_lookback is not None and table.write_mode != "merge":
            at = ("resources", i, "incremental_lookback")
            msg = f"{fname}:{project.lines.get(at, 1)}: {dotted(at)}: re-reads rows already loaded, which write_mode {table.write_mode} would load twice; use write_mode merge with primary_keys"
            raise ConfigError(msg)
