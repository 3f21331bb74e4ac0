"""The ingest.yml model (SPEC section 1), strict, with errors that name key and line.

:func:`load_project` reads the file, expands ``${VAR}`` (after a ``.env`` beside it),
validates it with pydantic (unknown keys are errors with a "did you mean"), lets each
connector validate its own keys, and returns a :class:`Project`.

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

import difflib
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from conduit import _env, _secrets, _yaml
from conduit.errors import ConfigError

WriteMode = Literal["append", "replace", "merge"]
SchemaEvolution = Literal["manual", "auto", "warn"]
CheckAction = Literal["fail", "warn", "dlq"]
DEFAULT_BATCH_SIZE = 122_880  # rows per batch: one DuckDB row group; bounds memory (see benchmarks/)


class Strict(BaseModel):
    """Base of every config model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class QualityCheck(Strict):
    """One entry of ``quality_checks``; the check name is resolved by :mod:`conduit.quality`."""

    check: str
    column: str | list[str] | None = None
    action: CheckAction = "fail"
    pattern: str | None = None
    min_value: float | int | str | None = None
    max_value: float | int | str | None = None
    values: list[Any] | None = None
    expression: str | None = None
    name: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class TableOptions(Strict):
    """Table-shaped options: set on a destination as defaults, on a resource to win."""

    table: str | None = None
    write_mode: WriteMode | None = None
    primary_keys: list[str] | None = None
    partition_by: list[str] | None = None
    file_size_mb: float | None = Field(default=None, gt=0)
    compression: str | None = None
    schema_evolution: SchemaEvolution | None = None
    batch_size: int | None = Field(default=None, gt=0)


class ResolvedTable(Strict):
    """Table options after resource > destination > built-in defaults."""

    table: str | None = None
    write_mode: WriteMode = "append"
    primary_keys: list[str] = Field(default_factory=list)
    partition_by: list[str] = Field(default_factory=list)
    file_size_mb: float = 128.0
    compression: str | None = None
    schema_evolution: SchemaEvolution = "manual"
    batch_size: int = DEFAULT_BATCH_SIZE


class ConnectorConfig(BaseModel):
    """``name`` + ``type``; every other key is validated by the connector's own model."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_\-]*$")
    type: str

    @property
    def options(self) -> dict[str, Any]:
        """The connector-specific keys, as written (after ``${VAR}`` expansion)."""
        return dict(self.model_extra or {})


class SourceConfig(ConnectorConfig):
    """An entry of ``sources``."""


class RetryOptions(Strict):
    """``retry:`` of a destination: how often and how patiently a retryable failure is tried again."""

    attempts: int = Field(default=4, ge=1, le=100)
    backoff_s: float = Field(default=0.5, ge=0)
    max_backoff_s: float = Field(default=8.0, ge=0)


class DestinationConfig(ConnectorConfig):
    """An entry of ``destinations``; table-shaped keys are defaults for its resources."""

    defaults: TableOptions = Field(default_factory=TableOptions, exclude=True)
    retry: RetryOptions = Field(default_factory=RetryOptions)

    @property
    def options(self) -> dict[str, Any]:
        """The connector-specific keys; table-shaped keys (``partition_by``, ...) are in ``defaults``."""
        return {k: v for k, v in (self.model_extra or {}).items() if k not in TableOptions.model_fields}


class ResourceConfig(TableOptions):
    """An entry of ``resources``: what to move from which source to which destination."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_\-]*$")
    source: str
    destination: str
    path: str | None = None
    query: str | None = None
    incremental_column: str | None = None
    incremental_lookback: str | int | float | None = None
    columns: dict[str, str] = Field(default_factory=dict)
    quality_checks: list[QualityCheck] = Field(default_factory=list)
    max_dlq_rows: int | None = Field(default=None, ge=0)
    max_dlq_fraction: float | None = Field(default=None, ge=0, le=1)


class IngestConfig(Strict):
    """The whole ingest.yml."""

    version: Literal[1] = 1
    state_path: str = ".conduit/conduit.duckdb"
    sources: list[SourceConfig]
    destinations: list[DestinationConfig]
    resources: list[ResourceConfig]


@dataclass
class Project:
    """A loaded ingest.yml: the validated config plus where it lives."""

    path: Path
    config: IngestConfig
    config_hash: str
    lines: dict[tuple[str | int, ...], int]

    @property
    def dir(self) -> Path:
        """The folder relative paths are resolved against."""
        return self.path.parent

    @property
    def state_path(self) -> Path:
        """The local store file."""
        return self.resolve(self.config.state_path)

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

    def table_options(self, resource: ResourceConfig) -> ResolvedTable:
        """Resource options win over destination defaults, which win over built-ins."""
        dest = self.destination(resource.destination).defaults
        merged: dict[str, Any] = {}
        for key in TableOptions.model_fields:
            for layer in (dest, resource):
                value = getattr(layer, key)
                if value is not None:
                    merged[key] = value
        return ResolvedTable(**merged)


def load_project(path: str | Path) -> Project:
    """Read, expand and validate an ingest.yml; raise :class:`ConfigError` naming key and line."""
    path = Path(path)
    if path.is_dir():
        path = path / "ingest.yml"
    if not path.is_file():
        msg = f"config file not found: {path}"
        raise ConfigError(msg)
    text = path.read_text(encoding="utf-8")
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
    env = {**_env.read_dotenv(path.parent / ".env"), **os.environ}
    data = _expand(data, env, (), lines, path.name)
    try:
        config = IngestConfig.model_validate(data)
    except ValidationError as exc:
        raise _config_error(exc, (), lines, path.name, IngestConfig) from None
    project = Project(path.resolve(), config, hashlib.sha256(text.encode()).hexdigest()[:16], lines)
    _check_connectors(project)
    _check_references(project)
    return project


def _expand(value: Any, env: dict[str, str], at: tuple[str | int, ...], lines: dict, fname: str) -> Any:
    if isinstance(value, dict):
        return {k: _expand(v, env, (*at, k), lines, fname) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, env, (*at, i), lines, fname) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:
        try:
            return _env.expand(value, env)
        except _env.UnsetVariable as exc:
            msg = f"{fname}:{lines.get(at, 1)}: {_dotted(at)}: environment variable {exc.args[0]} is not set (use ${{{exc.args[0]}:-default}} for a default)"
            raise ConfigError(msg) from None
    return value


def _check_connectors(project: Project) -> None:
    from conduit.connectors import registry

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
                msg = f"{fname}:{project.lines.get((*at, 'type'), 1)}: {_dotted((*at, 'type'))}: {exc}"
                raise ConfigError(msg) from None
            cls = connector.source if group == "sources" else connector.destination
            if cls is None:
                role = group[:-1]
                msg = f"{fname}:{project.lines.get((*at, 'type'), 1)}: {_dotted((*at, 'type'))}: connector {entry.type!r} cannot be a {role}"
                raise ConfigError(msg)
            options = entry.options
            if isinstance(entry, DestinationConfig):
                table_keys = {k: v for k, v in (entry.model_extra or {}).items() if k in TableOptions.model_fields}
                entry.defaults = TableOptions.model_validate(table_keys)
            try:
                validated = cls.Options.model_validate(options)
            except ValidationError as exc:
                raise _config_error(exc, at, project.lines, fname, cls.Options) from None
            if entry.type == "duckdb" and project.resolve(getattr(validated, "path", "")).resolve() == project.state_path.resolve():
                msg = f"{fname}:{project.lines.get((*at, 'path'), 1)}: {_dotted((*at, 'path'))}: is the store's file (state_path); give the store or the database another file"
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
                msg = f"{fname}:{project.lines.get(at, 1)}: {_dotted(at)}: unknown {key} {ref!r}{_suggest(ref, known)}; known: {', '.join(known) or 'none'}"
                raise ConfigError(msg)
        table = project.table_options(res)
        if table.write_mode == "merge" and not table.primary_keys:
            at = ("resources", i, "write_mode")
            msg = f"{fname}:{project.lines.get(at, 1)}: {_dotted(at)}: write_mode merge needs primary_keys"
            raise ConfigError(msg)
        if res.incremental_lookback is not None and table.write_mode != "merge":
            at = ("resources", i, "incremental_lookback")
            msg = f"{fname}:{project.lines.get(at, 1)}: {_dotted(at)}: re-reads rows already loaded, which write_mode {table.write_mode} would load twice; use write_mode merge with primary_keys"
            raise ConfigError(msg)


_SECRET_KEY = re.compile(r"password|passwd|secret|token|passphrase|private_key|connection_string", re.IGNORECASE)


def _config_error(exc: ValidationError, prefix: tuple[str | int, ...], lines: dict, fname: str, model: type[BaseModel]) -> ConfigError:
    err = exc.errors()[0]
    loc = (*prefix, *err["loc"])
    line = next((lines[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in lines), 1)
    if err["type"] == "extra_forbidden":
        key = str(err["loc"][-1])
        known = _fields_at(model, err["loc"][:-1])
        text = f"unknown key{_suggest(key, known)}"
    elif err["type"] == "missing":
        text = "required key is missing"
    elif any(isinstance(k, str) and _SECRET_KEY.search(k) for k in loc):
        text = f"{err['msg']} (value not shown: it is a secret; quote it if it is a number)"
    elif isinstance(err.get("input"), dict | list):  # a mapping may hold a password: never echoed
        text = f"{err['msg']} (got a {'mapping' if isinstance(err['input'], dict) else 'list'})"
    else:
        text = f"{err['msg']} (got {err.get('input')!r})"
    return ConfigError(f"{fname}:{line}: {_dotted(loc)}: {_secrets.redact(text)}")


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the (sub)model at ``loc`` inside ``model``, for "did you mean"."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part) if hasattr(current, "model_fields") else None
        if field is None:
            return []
        current = _model_of(field.annotation)
    return list(getattr(current, "model_fields", {}))


def _model_of(annotation: Any) -> Any:
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_of(arg)
        if found is not None:
            return found
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _suggest(word: str, known: list[str]) -> str:
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _dotted(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"
