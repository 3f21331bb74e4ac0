"""Minimal benchmark harness (a STUB for the PostgreSQL scenarios; the real harness is built separately).

Same API as the shared harness: :class:`Env` per repetition, :class:`Scenario` with
untimed ``prepare``, timed ``command`` and ``baseline`` (subprocess argv), and
``verify``. This stub times both commands with ``/usr/bin/time``-like peak RSS
(``resource.getrusage`` of children, per run) and prints one line per repetition.

Run: ``python -m benchmarks.harness postgres --sf 1 --repeat 3``
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PG_URI = os.environ.get("CONDUIT_BENCH_POSTGRES_URI", "postgresql://postgres@127.0.0.1:5432/test")
TPCHGEN = "/work/main/.venv/bin/tpchgen-cli"


@dataclass
class Env:
    """One repetition's inputs."""

    sf: float
    data: Path
    work: Path
    pg_uri: str


@dataclass
class Scenario:
    """A conduit command and its baseline, timed on the same data in the same run."""

    name: str
    baseline_name: str
    prepare: Callable[[Env], None]
    command: Callable[[Env], list[str]]
    baseline: Callable[[Env], list[str]]
    verify: Callable[[Env], int]


def data_dir(sf: float) -> Path:
    """TPC-H lineitem as parquet/ and csv/ (generated once, cached under /tmp/tpch)."""
    tag = f"{sf:g}".replace(".", "")
    root = Path(f"/tmp/tpch/bench{tag}")
    for fmt, existing in (("parquet", Path(f"/tmp/tpch/p{tag}/lineitem.parquet")), ("csv", Path(f"/tmp/tpch/c{tag}/lineitem.csv"))):
        out = root / fmt
        target = out / f"lineitem.{fmt}"
        if target.exists():
            continue
        out.mkdir(parents=True, exist_ok=True)
        if existing.exists():
            target.symlink_to(existing)
        else:
            subprocess.run([TPCHGEN, fmt, "-s", f"{sf:g}", "--tables=lineitem", f"--output-dir={out}"], check=True)
    return root


def timed(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB of the child) for one command."""
    start = time.monotonic()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", *argv], capture_output=True, text=True)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        msg = f"{argv[0]} failed ({proc.returncode}): {proc.stdout[-2000:]} {proc.stderr[-2000:]}"
        raise RuntimeError(msg)
    rss_kib = int(proc.stderr.strip().splitlines()[-1])
    return wall, rss_kib / 1024


def main() -> None:
    """Run a scenarios module's SCENARIOS, alternating command and baseline."""
    ap = argparse.ArgumentParser()
    ap.add_argument("module")
    ap.add_argument("--sf", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    scenarios = importlib.import_module(f"benchmarks.scenarios.{args.module}").SCENARIOS
    data = data_dir(args.sf)
    print(f"{'scenario':34} {'rep':>3} {'conduit s':>9} {'base s':>7} {'ratio':>6} {'RSS MiB':>8} {'rows':>10}")
    for sc in scenarios:
        if args.only and args.only not in sc.name:
            continue
        for rep in range(args.repeat):
            work = Path(tempfile.mkdtemp(prefix="conduit-bench-"))
            env = Env(args.sf, data, work, PG_URI)
            try:
                sc.prepare(env)
                base_s, _ = timed(sc.baseline(env))
                wall, rss = timed(sc.command(env))
                rows = sc.verify(env)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            print(f"{sc.name:34} {rep:>3} {wall:9.2f} {base_s:7.2f} {wall / base_s:6.2f} {rss:8.0f} {rows:>10}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
