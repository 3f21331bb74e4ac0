"""Conformance harness for ``type: bigquery``: bqemulator locally, a real project when configured.

With ``CONDUIT_TEST_BIGQUERY_PROJECT`` set (credentials from ADC or
``GOOGLE_APPLICATION_CREDENTIALS``; optional ``CONDUIT_TEST_BIGQUERY_LOCATION``) the
harness targets that project; otherwise it starts bqemulator (tests/stand_ins). Each
harness owns a fresh dataset, read back through its own client.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
from stand_ins import servers


class BigQueryHarness:
    """The Harness protocol (tests/conformance/harness.py) for BigQuery."""

    type = "bigquery"

    def __init__(self, project: str | None = None):
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        self.live = project if project is not None else os.environ.get("CONDUIT_TEST_BIGQUERY_PROJECT", "")
        self.location = os.environ.get("CONDUIT_TEST_BIGQUERY_LOCATION") if self.live else None
        if self.live:
            self.project, self.endpoint = self.live, None
            self.client = bigquery.Client(project=self.project, location=self.location)
        else:
            self.project, self.endpoint = servers.BQ_PROJECT, servers.require(servers.bqemulator).url
            self.client = bigquery.Client(project=self.project, credentials=AnonymousCredentials(), client_options=ClientOptions(api_endpoint=self.endpoint))
        self.dataset = f"conduit_{uuid.uuid4().hex[:10]}"
        self.client.create_dataset(f"{self.project}.{self.dataset}")

    def close(self) -> None:
        """Drop the dataset and close the client."""
        try:
            self.client.delete_dataset(f"{self.project}.{self.dataset}", delete_contents=True, not_found_ok=True)
        finally:
            self.client.close()

    def destination_yaml(self, tmp_path: Path) -> dict[str, Any]:
        """The destinations[] entry (without name)."""
        entry: dict[str, Any] = {"type": "bigquery", "project": self.project, "dataset": self.dataset}
        if self.endpoint:
            entry["api_endpoint"] = self.endpoint
        if self.location:
            entry["location"] = self.location
        return entry

    def table_name(self, base: str) -> str:
        """``<dataset>.<base>_<unique>``."""
        return f"{self.dataset}.{base}_{uuid.uuid4().hex[:6]}"

    def _ref(self, table: str) -> str:
        return f"`{self.project}.{table if '.' in table else self.dataset + '.' + table}`"

    def query(self, sql: str) -> pa.Table:
        """Run ``sql`` on the harness's own client."""
        return self.client.query(sql).result().to_arrow(create_bqstorage_client=False)

    def count(self, table: str) -> int:
        """``COUNT(*)``."""
        return int(self.query(f"SELECT COUNT(*) AS n FROM {self._ref(table)}").column("n")[0].as_py())

    def read(self, table: str) -> pa.Table:
        """The whole table as Arrow."""
        return self.query(f"SELECT * FROM {self._ref(table)}")

    def column_types(self, table: str) -> dict[str, str]:
        """Column name -> lower-case BigQuery type (``int64``, ``numeric``, ``datetime``, ``json``...)."""
        found = self.client.get_table(f"{self.project}.{table if '.' in table else self.dataset + '.' + table}")
        names = {"INTEGER": "int64", "FLOAT": "float64", "BOOLEAN": "bool", "RECORD": "struct"}
        out = {}
        for f in found.schema:
            kind = names.get(f.field_type, f.field_type.lower())
            out[f.name] = f"array<{kind}>" if f.mode == "REPEATED" else kind
        return out

    def drop(self, table: str) -> None:
        """Delete the table if it exists."""
        self.client.delete_table(f"{self.project}.{table if '.' in table else self.dataset + '.' + table}", not_found_ok=True)


def bigquery_harness() -> BigQueryHarness:
    """Factory for ``HARNESSES["bigquery"]``."""
    return BigQueryHarness()
