"""The process tuning of the CLI applies to ``conduit.run()`` too; the environment wins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conduit._runtime import ENV_DEFAULTS

CONFIG = """
sources: [{name: files, type: csv, path: .}]
destinations: [{name: local, type: duckdb}]
resources: [{name: people, source: files, destination: local, path: data.csv}]
"""


def _project(tmp_path: Path) -> Path:
    (tmp_path / "data.csv").write_text("id,name\n1,a\n2,b\n")
    (tmp_path / "ingest.yml").write_text(CONFIG)
    return tmp_path / "ingest.yml"


def _env_after(code: str, preset: dict[str, str]) -> dict[str, str | None]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_DEFAULTS}
    env.update(preset)
    code += f"\nimport json, os; print(json.dumps({{k: os.environ.get(k) for k in {sorted(ENV_DEFAULTS)!r}}}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "call",
    [
        pytest.param("import conduit; assert conduit.run({cfg!r}).status == 'success'", id="library"),
        pytest.param("from conduit.cli import main\ntry:\n    main(['run', {cfg!r}, '--no-progress'])\nexcept SystemExit as e:\n    assert e.code == 0", id="cli"),
    ],
)
def test_run_tunes_the_process(tmp_path: Path, call: str) -> None:
    cfg = str(_project(tmp_path))
    got = _env_after(call.format(cfg=cfg), {})
    assert got == ENV_DEFAULTS


def test_the_environment_wins_over_the_tuning(tmp_path: Path) -> None:
    cfg = str(_project(tmp_path))
    got = _env_after(f"import conduit; conduit.run({cfg!r})", {"OPENBLAS_NUM_THREADS": "3"})
    assert got["OPENBLAS_NUM_THREADS"] == "3"
    assert got["POLARS_CSV_CHUNK_SIZE"] == ENV_DEFAULTS["POLARS_CSV_CHUNK_SIZE"]


ARENAS = """
import ctypes, threading
{setup}
barrier = threading.Barrier(8)
def work():
    barrier.wait()  # all at once: glibc gives a thread that finds every arena busy a new one
    keep = [bytearray(1 << 17) for _ in range(50)]
    barrier.wait()
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
ctypes.CDLL(None).malloc_stats()  # one "Arena N:" block per arena, on stderr
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or not hasattr(os, "confstr") or "glibc" not in (os.confstr("CS_GNU_LIBC_VERSION") or ""), reason="glibc's malloc arenas")
@pytest.mark.parametrize(("setup", "most"), [("from conduit._runtime import tune_process; tune_process()", 2), ("", None)])
def test_threads_share_at_most_two_malloc_arenas(setup: str, most: int | None) -> None:
    """Counted by glibc itself (``malloc_stats``): with the tuning, 8 threads allocating at once share 2 arenas; without, they get more."""
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    out = subprocess.run([sys.executable, "-c", ARENAS.format(setup=setup)], capture_output=True, text=True, check=True, env=env)
    arenas = out.stderr.count("Arena ")
    assert arenas >= 1, out.stderr
    assert arenas <= most if most is not None else arenas > 2
