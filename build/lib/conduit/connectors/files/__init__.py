"""The file connectors: CSV, NDJSON, JSON and Parquet, local or on object storage.

:mod:`.source` reads them (:mod:`.blocks`, :mod:`.row_groups`, and the tolerant line readers
:mod:`.csv_tolerant` and :mod:`.ndjson_tolerant` for files the fast path rejects);
:mod:`.formats` writes them through :mod:`.destination` (staging, publish) and
:mod:`.chunk_writer` (file rolling, hive partitions); :mod:`.storage` opens fsspec stores.
"""

from conduit.connectors.base import Connector
from conduit.connectors.files.formats import CsvDestination, NdjsonDestination, ParquetDestination
from conduit.connectors.files.source import CsvSource, JsonSource, NdjsonSource, ParquetSource

CSV = Connector("csv", CsvSource, CsvDestination)
NDJSON = Connector("ndjson", NdjsonSource, NdjsonDestination)
JSON = Connector("json", JsonSource, None)
PARQUET = Connector("parquet", ParquetSource, ParquetDestination)

__all__ = ["CSV", "JSON", "NDJSON", "PARQUET"]
