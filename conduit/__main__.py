"""``python -m conduit``."""

from conduit.cli import main

main()
