"""The package version, read from the installed distribution ``conduit-load``.

In its own module, so the modules that record it need not import the package.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("conduit-load")  # the distribution name; import and CLI stay ``conduit``
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0+unknown"
