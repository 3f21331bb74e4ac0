"""The ingest.yml model: strict pydantic models whose errors name the key and its line.

Unknown keys are errors with a "did you mean"; connector-specific keys are kept for the
connector to validate (see :mod:`conduit.project`, which loads a whole project).
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from conduit import _secrets
from conduit.errors import ConfigError

WriteMode = Literal["append", "replace", "merge"]
SchemaEvolution = Literal["manual", "auto", "warn"]
CheckAction = Literal["fail", "warn", "dlq"]
DEFAULT_BATCH_SIZE = 122_880  # rows per batch: one DuckDB row group; bounds memory
NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_\-]*$"
Lines = dict[tuple[str | int, ...], int]
"""Where each key of the file is: its path (``("resources", 0, "name")``) -> line number."""


class Strict(BaseModel):
    """Base of every config model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class QualityCheck(Strict):
    """One entry of ``quality_checks``; the check name is resolved by :mod:`conduit.quality`."""

    check: str = Field(description="`not_null`, `unique`, `regex`, `range`, `enum`, `expression` or a custom check's name")
    column: str | list[str] | None = Field(default=None, description="the column checked (a list: `unique` over several columns)")
    action: CheckAction = Field(default="fail", description="`fail`: nothing is published; `warn`: loaded and counted; `dlq`: the row goes to the dead-letter store")
    pattern: str | None = Field(default=None, description="`regex`: the pattern a value must match")
    min_value: float | int | str | None = Field(default=None, description="`range`: the lowest value allowed")
    max_value: float | int | str | None = Field(default=None, description="`range`: the highest value allowed")
    values: list[object] | None = Field(default=None, description="`enum`: the values allowed")
    expression: str | None = Field(default=None, description="`expression`: a SQL boolean expression (Polars SQL) every row must satisfy")
    name: str | None = Field(default=None, description="the name the check's violations are counted and dead-lettered under")
    params: dict[str, object] = Field(default_factory=dict, description="a custom check's parameters")


class TableOptions(Strict):
    """Table-shaped options: set on a destination as defaults, on a resource to win."""

    table: str | None = Field(default=None, description="the target table (`schema.table`); default: the resource's name in the destination's schema")
    write_mode: WriteMode | None = Field(default=None, description="`append` inserts, `replace` swaps the whole table, `merge` upserts on `primary_keys`")
    primary_keys: list[str] | None = Field(default=None, description="the key columns: required for `merge`; the primary key of a created table")
    partition_by: list[str] | None = Field(default=None, description="file destinations: hive partition columns (`col=value/` folders)")
    file_size_mb: float | None = Field(default=None, gt=0, description="file destinations: roll to a new file past this size")
    compression: str | None = Field(default=None, description="file destinations: the codec (Parquet: zstd, snappy...; CSV/NDJSON: gzip, zstd, bz2, lz4)")
    schema_evolution: SchemaEvolution | None = Field(default=None, description="a new or changed column: `manual` fails with the DDL that fixes it, `auto` adds and widens losslessly, `warn` loads the matching columns")
    batch_size: int | None = Field(default=None, gt=0, description="rows per batch through the pipeline")


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
    def options(self) -> dict[str, object]:
        """The connector-specific keys, as written (after ``${VAR}`` expansion)."""
        return dict(self.model_extra or {})


class SourceConfig(ConnectorConfig):
    """An entry of ``sources``."""


class RetryOptions(Strict):
    """``retry:`` of a destination: how often and how patiently a retryable failure is tried again."""

    attempts: int = Field(default=4, ge=1, le=100, description="tries in all, the first one included")
    backoff_s: float = Field(default=0.5, ge=0, description="seconds before the second try, doubled after each (with jitter: 50-100% of it)")
    max_backoff_s: float = Field(default=8.0, ge=0, description="the longest wait between tries")


class DestinationConfig(ConnectorConfig):
    """An entry of ``destinations``; table-shaped keys are defaults for its resources."""

    defaults: TableOptions = Field(default_factory=TableOptions, exclude=True)
    retry: RetryOptions = Field(default_factory=RetryOptions)

    @property
    def options(self) -> dict[str, object]:
        """The connector-specific keys; table-shaped keys (``partition_by``, ...) are in ``defaults``."""
        return {k: v for k, v in (self.model_extra or {}).items() if k not in TableOptions.model_fields}


class ResourceConfig(TableOptions):
    """An entry of ``resources``: what to move from which source to which destination."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_\-]*$", description="unique; also the default table name")
    source: str = Field(description="the `name` of an entry of `sources`")
    destination: str = Field(description="the `name` of an entry of `destinations`")
    path: str | None = Field(default=None, description="file sources: a file, folder or glob under the source's `path`")
    query: str | None = Field(default=None, description="SQL sources: the SELECT to run (default: `SELECT * FROM <name>`)")
    incremental_column: str | None = Field(default=None, description="load only rows above the stored high-water mark of this column")
    incremental_lookback: str | int | float | None = Field(default=None, description="re-read a window below the mark (`2h`, or a number); needs `write_mode: merge`")
    columns: dict[str, str] = Field(default_factory=dict)
    tags: list[Annotated[str, Field(pattern=NAME_PATTERN)]] = Field(default_factory=list, description="names (letters, digits, `_`, `-`) to select it by: `conduit run -r tag:NAME`")
    quality_checks: list[QualityCheck] = Field(default_factory=list)
    max_dlq_rows: int | None = Field(default=None, ge=0)
    max_dlq_fraction: float | None = Field(default=None, ge=0, le=1)
    parallelism: int | None = Field(default=None, ge=1, le=256)
    """Parts of this resource read and staged at once (default: the run's ``--workers``; 1 with a ``unique`` check)."""
    partition_column: str | None = Field(default=None, description="PostgreSQL sources: an integer column; the query is read as 8 key ranges (`col >= a AND col < b`), parts loaded at once")


class TargetConfig(Strict):
    """An entry of ``targets``: what a target (dev, prod, ...) changes; applied by :mod:`conduit.targets`."""

    destinations: dict[str, dict[str, Any]] = Field(default_factory=dict, description="per destination name, keys that replace the destination's own (a different `type` replaces them all)")
    state_path: str | None = Field(default=None, description="the target's store; default `<target>.duckdb` in the folder of the top-level `state_path`")


class EngineConfig(Strict):
    """``engine:``: where the parts of a load are read, checked and staged (``conduit run --engine`` wins).

    ``local`` runs them in this process. ``ray`` sends each part to a task on a Ray
    cluster (``pip install 'conduit-load[ray]'``); this process keeps the store, the
    checkpoints and the publish. Workers rebuild the connectors from ingest.yml's text
    with its ``${VAR}`` unexpanded and expand them from their own environment.
    """

    type: Literal["local", "ray"] = "local"
    address: str | None = Field(default=None, description="ray: the cluster (`host:port` of the head node, `ray://host:10001`, `auto`); default `RAY_ADDRESS`, else a local cluster for the run")
    forward_env: bool = Field(default=False, description="ray: send the values of ingest.yml's `${VAR}`s in the job's `runtime_env` (Ray logs them); default: workers use their own environment")


class IngestConfig(Strict):
    """The whole ingest.yml."""

    version: Literal[1] = 1
    state_path: str = ".conduit/conduit.duckdb"
    engine: EngineConfig = Field(default_factory=EngineConfig)
    sources: list[SourceConfig]
    destinations: list[DestinationConfig]
    resources: list[ResourceConfig]
    targets: dict[str, TargetConfig] = Field(default_factory=dict, description="target name -> TargetConfig (below); chosen by `--target`, `CONDUIT_TARGET` or `default_target`")
    default_target: str | None = Field(default=None, description="the target used when neither `--target` nor `CONDUIT_TARGET` names one")


_SECRET_KEY = re.compile(r"password|passwd|secret|token|passphrase|private_key|connection_string", re.IGNORECASE)


def config_error(exc: ValidationError, prefix: tuple[str | int, ...], lines: Lines, fname: str, model: type[BaseModel]) -> ConfigError:
    errors = exc.errors()
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])  # a misspelt key also makes its right name "missing"
    loc = (*prefix, *err["loc"])
    line = next((lines[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in lines), 1)
    if err["type"] == "extra_forbidden":
        key = str(err["loc"][-1])
        known = _fields_at(model, err["loc"][:-1])
        text = f"unknown key{suggest(key, known)}"
    elif err["type"] == "missing":
        text = "required key is missing"
    elif any(isinstance(k, str) and _SECRET_KEY.search(k) for k in loc):
        text = f"{err['msg']} (value not shown: it is a secret; quote it if it is a number)"
    elif isinstance(err.get("input"), dict | list):  # a mapping may hold a password: never echoed
        text = f"{err['msg']} (got a {'mapping' if isinstance(err['input'], dict) else 'list'})"
    else:
        text = f"{err['msg']} (got {err.get('input')!r})"
    return ConfigError(f"{fname}:{line}: {dotted(loc)}: {_secrets.redact(text)}")


def _fields_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """Field names of the (sub)model at ``loc`` inside ``model``, for "did you mean"."""
    current: type[BaseModel] | None = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part) if current is not None else None
        if field is None:
            return []
        current = _model_of(field.annotation)
    return list(current.model_fields) if current is not None else []


def _model_of(annotation: object) -> type[BaseModel] | None:
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_of(arg)
        if found is not None:
            return found
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def suggest(word: str, known: list[str]) -> str:
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def dotted(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"
