"""Shared fixtures: real PostgreSQL, moto S3, temporary projects."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import services


@pytest.fixture(scope="session")
def pg_uri() -> str:
    """A PostgreSQL URI that answers (fails, never skips, when none can be had)."""
    return services.postgres_uri()


def _fresh_schema(pg_uri: str) -> Iterator[str]:
    import adbc_driver_postgresql.dbapi as pg

    name = f"t_{uuid.uuid4().hex[:10]}"
    with pg.connect(pg_uri, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f'CREATE SCHEMA "{name}"')
    yield name
    with pg.connect(pg_uri, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA "{name}" CASCADE')


@pytest.fixture
def pg_schema(pg_uri: str) -> Iterator[str]:
    """A fresh schema per test, dropped afterwards."""
    yield from _fresh_schema(pg_uri)


@pytest.fixture
def second_schema(pg_uri: str) -> Iterator[str]:
    """Another fresh schema, for tests that load two places (dev and prod targets)."""
    yield from _fresh_schema(pg_uri)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on loopback, with test credentials in the environment."""
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        os.environ.setdefault(key, value)
    endpoint, server = services.start_moto()
    yield endpoint
    server.stop()  # type: ignore[attr-defined]


@pytest.fixture
def project(tmp_path: Path):
    """Write an ingest.yml (and data files) into a temp folder; returns a writer function."""

    def write(config: str, files: dict[str, str | bytes] | None = None) -> Path:
        for name, content in (files or {}).items():
            path = tmp_path / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content if isinstance(content, bytes) else content.encode())
        cfg = tmp_path / "ingest.yml"
        cfg.write_text(config)
        return cfg

    return write
