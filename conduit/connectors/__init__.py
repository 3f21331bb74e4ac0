"""The connector registry: explicit built-ins plus the ``conduit.connectors`` entry points.

A plug-in package declares, in its own pyproject::

    [project.entry-points."conduit.connectors"]
    mytype = "my_package.module:CONNECTOR"

where ``CONNECTOR`` is a :class:`~conduit.connectors.base.Connector`. Built-ins are
imported lazily by dotted path, so ``conduit --help`` imports no driver.

Examples
--------
>>> registry.get("csv").type
'csv'
>>> registry.get("csvv")
Traceback (most recent call last):
conduit.errors.ConnectorNotFound: unknown connector type 'csvv' (did you mean 'csv'?); known: bigquery, csv, duckdb, json, ndjson, parquet, postgresql, snowflake
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
from importlib.metadata import entry_points

from conduit.connectors.base import Connector
from conduit.errors import ConfigError, ConnectorNotFound

BUILTINS: dict[str, str] = {
    "csv": "conduit.connectors.files:CSV",
    "ndjson": "conduit.connectors.files:NDJSON",
    "json": "conduit.connectors.files:JSON",
    "parquet": "conduit.connectors.files:PARQUET",
    "duckdb": "conduit.connectors.duckdb:CONNECTOR",
    "postgresql": "conduit.connectors.postgres:CONNECTOR",
    "snowflake": "conduit.connectors.warehouses.snowflake:CONNECTOR",
    "bigquery": "conduit.connectors.warehouses.bigquery:CONNECTOR",
}
ENTRY_POINT_GROUP = "conduit.connectors"


class Registry:
    """Looks up connectors by ``type``; built-ins first, then entry points."""

    def __init__(self, builtins: dict[str, str]):
        self._paths = dict(builtins)
        self._loaded: dict[str, Connector] = {}

    def _plugins(self) -> dict[str, str]:
        return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name not in self._paths}

    def known(self) -> dict[str, str]:
        """Every connector type and where it comes from (dotted path)."""
        return {**self._paths, **self._plugins()}

    def get(self, type_name: str, drivers: bool = True) -> Connector:
        """The connector for ``type_name``; :class:`ConnectorNotFound` listing known ones.

        ``drivers=False`` skips the check that its driver packages are installed: enough
        for its option models (the configuration reference, the JSON Schema).
        """
        if type_name in self._loaded:
            return self._loaded[type_name]
        known = self.known()
        if type_name not in known:
            close = difflib.get_close_matches(type_name, list(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            msg = f"unknown connector type {type_name!r}{hint}; known: {', '.join(sorted(known))}"
            raise ConnectorNotFound(msg)
        module_name, _, attr = known[type_name].partition(":")
        try:
            connector = getattr(importlib.import_module(module_name), attr)
        except ImportError as exc:
            msg = f"connector {type_name!r} needs an extra package: {exc.name or exc} (pip install 'conduit-load[{type_name}]')"
            raise ConfigError(msg) from None
        if not drivers:
            return connector
        missing = next((m for m in connector.requires if not _installed(m)), None)
        if missing is not None:
            msg = f"connector {type_name!r} needs an extra package: {missing} (pip install 'conduit-load[{connector.extra or type_name}]')"
            raise ConfigError(msg)
        self._loaded[type_name] = connector
        return connector


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a missing parent package, or a finder that refuses it
        return False


registry = Registry(BUILTINS)
