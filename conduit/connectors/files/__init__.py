"""The file connectors: CSV, NDJSON, JSON and Parquet, local or on object storage."""

from conduit.connectors.files.source import CSV, JSON, NDJSON, PARQUET

__all__ = ["CSV", "JSON", "NDJSON", "PARQUET"]
