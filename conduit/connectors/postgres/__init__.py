"""The PostgreSQL connector: :mod:`.source` streams a query, :mod:`.destination` loads by binary COPY.

:mod:`.connection` holds the options and connects (ADBC, psycopg for COPY); :mod:`.types`
maps Arrow and PostgreSQL types; :mod:`.copy_encoder` builds COPY rows (pgpq);
:mod:`.publish` plans the publish SQL.
"""

from conduit.connectors.base import Connector
from conduit.connectors.postgres.destination import PostgresDestination
from conduit.connectors.postgres.source import PostgresSource

CONNECTOR = Connector("postgresql", PostgresSource, PostgresDestination, extra="postgresql", requires=("adbc_driver_postgresql", "adbc_driver_manager", "psycopg", "pgpq"))

__all__ = ["CONNECTOR"]
