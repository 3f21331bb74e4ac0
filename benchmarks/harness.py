"""Benchmark harness: scenarios, TPC-H data, and timed subprocesses with peak RSS.

A :class:`Scenario` is a conduit command and a baseline command for the same job,
both run as subprocesses in a fresh folder (:class:`Env`) per repetition. Wall time
is measured around the subprocess; peak RSS is the sum over the whole process tree
(so commands that fork are counted too) of each process's high-water mark (``VmHWM``
in ``/proc``, RSS elsewhere), sampled every 50 ms. ``wait4``'s ``ru_maxrss`` is not
used on Linux: it starts from the RSS of the process that forked the command (the
kernel carries it across ``exec``), so ``psql`` read as large as this harness.
CPU time is ``wait4``'s user plus system time of the command and the descendants it
waited for: the client's share of a load (a database server's own work is not in it),
steadier than wall time on a machine whose other tenants come and go.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("CONDUIT_BENCH_DATA") or ROOT / "benchmarks" / "data")  # generated data (never committed)
RESULTS = ROOT / "benchmarks" / "results"
PG_URI = "postgresql://postgres@127.0.0.1:5432/test"
POLL_S = 0.05  # tree sampling; each process's own high-water mark covers peaks between samples


@dataclass
class Env:
    """What one repetition of a scenario gets."""

    sf: float
    data: Path  # data/"parquet"/"lineitem.parquet", data/"csv"/"lineitem.csv" (CSV has a header)
    work: Path  # fresh empty folder for this repetition
    pg_uri: str


@dataclass
class Scenario:
    """A conduit command and its baseline; ``verify`` counts rows in the target independently."""

    name: str
    baseline_name: str
    prepare: Callable[[Env], None]
    command: Callable[[Env], list[str]]
    baseline: Callable[[Env], list[str]]
    verify: Callable[[Env], int]
    expected: Callable[[Env], int] | None = None  # rows the target must hold; default: all of lineitem
    outside_rss: Callable[[], int] | None = None  # RSS now of processes the command uses outside its tree (a Ray cluster)
    settle: Callable[[Env], None] | None = None  # untimed, before each timed command (baseline and conduit alike): e.g. a CHECKPOINT


@dataclass
class Measurement:
    """One timed subprocess."""

    wall_s: float
    peak_rss: int  # bytes
    returncode: int
    output: str = ""
    cpu_s: float = 0.0  # user + system, the command's and its waited-for descendants' (wait4)


@dataclass
class Result:
    """All repetitions of one scenario at one scale factor."""

    scenario: str
    baseline_name: str
    sf: float
    command: list[Measurement] = field(default_factory=list)
    baseline: list[Measurement] = field(default_factory=list)
    rows: int | None = None
    expected: int | None = None
    error: str | None = None


def pg_uri() -> str:
    """The PostgreSQL server the scenarios may use."""
    return os.environ.get("CONDUIT_BENCH_POSTGRES_URI", PG_URI)


def sf_name(sf: float) -> str:
    """``0.1`` -> ``"0.1"``, ``1.0`` -> ``"1"``."""
    return f"{sf:g}"


def ensure_data(sf: float) -> Path:
    """TPC-H lineitem at ``sf`` as Parquet and CSV under benchmarks/data/sf<SF>/ (cached)."""
    root = DATA / f"sf{sf_name(sf)}"
    gen = Path(sys.executable).with_name("tpchgen-cli")
    exe = str(gen) if gen.exists() else "tpchgen-cli"
    for fmt, ext in (("parquet", "parquet"), ("csv", "csv")):
        out = root / fmt
        if (out / f"lineitem.{ext}").is_file():
            continue
        tmp = root / f".{fmt}.tmp"
        subprocess.run([exe, fmt, "-s", sf_name(sf), "-T", "lineitem", "-o", str(tmp), "--overwrite"], check=True)
        tmp.rename(out)
    return root


def lineitem_rows(env: Env) -> int:
    """Rows of the generated lineitem (from the Parquet footer)."""
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(env.data / "parquet" / "lineitem.parquet").metadata.num_rows)


def conduit_argv(config: Path, *extra: str) -> list[str]:
    """``python -m conduit run <config> --no-progress`` with this interpreter."""
    return [sys.executable, "-m", "conduit", "run", str(config), "--no-progress", *extra]


def python_argv(code: str) -> list[str]:
    """``python -c <code>`` with this interpreter."""
    return [sys.executable, "-c", code]


def child_env() -> dict[str, str]:
    """The subprocess environment: this checkout first on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _tree_rss(proc: psutil.Process) -> int:
    """The sum of the peak RSS so far of every process in ``proc``'s tree."""
    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in procs:
        try:
            total += _peak(p)
        except (psutil.Error, OSError):
            continue
    return total


def _peak(p: psutil.Process) -> int:
    """``VmHWM`` (peak RSS of the process's current program) on Linux, else its RSS now."""
    if sys.platform.startswith("linux"):
        with open(f"/proc/{p.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    return int(p.memory_info().rss)


def measure(argv: list[str], cwd: Path, log: Path, outside_rss: Callable[[], int] | None = None) -> Measurement:
    """Run ``argv``; wall time, CPU time and peak RSS of its whole process tree.

    With ``outside_rss`` (the summed RSS *now* of processes the command uses but did not
    start, say a Ray cluster's), each sample adds it to the tree's peaks.
    """
    peak = 0
    done = threading.Event()
    with log.open("wb") as out:
        started = time.perf_counter()
        popen = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=child_env())
        try:
            proc = psutil.Process(popen.pid)
        except psutil.Error:
            proc = None

        def poll() -> None:
            nonlocal peak
            while proc is not None and not done.is_set():
                peak = max(peak, _tree_rss(proc) + (outside_rss() if outside_rss else 0))
                done.wait(POLL_S)

        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
        _, status, usage = os.wait4(popen.pid, 0)
        wall = time.perf_counter() - started
        done.set()
        thread.join()
        popen.returncode = os.waitstatus_to_exitcode(status)
    maxrss = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    if sys.platform.startswith("linux") and peak:  # ru_maxrss counts the forking harness (see the module docstring)
        maxrss = 0
    return Measurement(wall, max(peak, maxrss), popen.returncode, log.read_text(errors="replace")[-2000:], usage.ru_utime + usage.ru_stime)
