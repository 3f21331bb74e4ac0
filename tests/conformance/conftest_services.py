"""Session fixtures for the warehouse stand-ins, namespaced to merge into tests/conformance/conftest.py.

Register with ``from conftest_services import *  # noqa: F403`` (or ``pytest_plugins`` in the
root conftest). The servers themselves are started once per process by
tests/stand_ins/servers.py (shared with tests/integration), so these fixtures and the
harness factories never start a second one. In CI (``CI`` set) an unavailable stand-in
fails the test; locally it skips with the reason.
"""

from __future__ import annotations

import pytest
from stand_ins import servers


@pytest.fixture(scope="session")
def sfbq_fakesnow_endpoint() -> servers.Endpoint:
    """fakesnow's server (Snowflake stand-in)."""
    return servers.require(servers.fakesnow)


@pytest.fixture(scope="session")
def sfbq_bqemulator_endpoint() -> servers.Endpoint:
    """bqemulator's REST endpoint (BigQuery stand-in), project ``test-proj``."""
    return servers.require(servers.bqemulator)
