"""``python -m conduit``."""

from conduit.cli import entry

entry()
