"""The PostgreSQL connector: a source and a destination."""

from conduit.connectors.postgres.destination import CONNECTOR

__all__ = ["CONNECTOR"]
