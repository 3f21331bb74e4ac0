"""Benchmark scenarios: each module here defines ``SCENARIOS: list[Scenario]``."""
