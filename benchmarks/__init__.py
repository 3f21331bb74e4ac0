"""Benchmarks: ``python -m benchmarks.run --sf 1`` (see :mod:`benchmarks.harness`)."""
