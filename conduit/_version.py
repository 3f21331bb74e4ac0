"""The package version: written here once; ``pyproject.toml`` reads it (``[tool.setuptools.dynamic]``).

In its own module, so the modules that record it need not import the package. A
literal, not ``importlib.metadata.version("conduit-load")``: that import and its search
of the installed distributions cost every start about 20 ms.
"""

__version__ = "0.1.0"
