"""The ``conduit`` entry point ends with ``os._exit``: nothing may be lost on the way out.

Each case runs the real entry point in a child process and checks what a normal
interpreter exit would guarantee: the exit code, every byte of piped output, exit
handlers, other threads' work, and a quiet end when the reader of a pipe goes away.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BUFFERED = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # output waits in buffers, as for most users
ENTRY = "import sys; from conduit.cli import entry; sys.argv = ['conduit', *sys.argv[1:]]; {before}; entry()"


def _entry(*args: str, before: str = "pass", **kw: object) -> subprocess.CompletedProcess[str]:
    kw.setdefault("env", BUFFERED)
    return subprocess.run([sys.executable, "-c", ENTRY.format(before=before), *args], capture_output=True, text=True, timeout=120, **kw)  # type: ignore[call-overload, no-any-return]


def _project(tmp_path: Path) -> Path:
    """An ingest.yml whose store exists (``conduit query`` reads it)."""
    import duckdb

    cfg = tmp_path / "ingest.yml"
    cfg.write_text(f"state_path: {tmp_path / 'state.duckdb'}\nsources: []\ndestinations: []\nresources: []\n")
    duckdb.connect(str(tmp_path / "state.duckdb")).close()
    return cfg


def test_piped_output_arrives_whole(tmp_path: Path) -> None:
    cfg = _project(tmp_path)
    out = _entry("query", "--config", str(cfg), "--format", "csv", "SELECT range AS n FROM range(200000)")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "n"
    assert [int(v) for v in lines[1:]] == list(range(200_000))


def test_exit_code_and_error_line_are_kept(tmp_path: Path) -> None:
    out = _entry("run", str(tmp_path / "missing.yml"), "--no-progress")
    assert out.returncode == 2
    assert "missing.yml" in out.stderr


def test_exit_handlers_and_other_threads_finish_first() -> None:
    before = "import atexit, threading, time; atexit.register(lambda: print('handler ran', flush=True)); threading.Thread(target=lambda: (time.sleep(0.5), print('thread done', flush=True))).start()"
    out = _entry("--version", before=before)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-2:] == ["thread done", "handler ran"]
    assert "conduit" in out.stdout


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    cfg = _project(tmp_path)
    code = ENTRY.format(before="pass")
    cmd = f"{sys.executable} -c \"{code}\" query --config {cfg} --format csv 'SELECT range FROM range(500000)' | head -n 2"
    out = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, timeout=120, env=BUFFERED)
    assert out.stdout.splitlines() == ["range", "0"]
    assert "Traceback" not in out.stderr
    assert "BrokenPipe" not in out.stderr


def test_a_profiled_run_still_reports() -> None:
    """``python -m cProfile`` prints its table after the program: the quick exit steps aside."""
    out = subprocess.run([sys.executable, "-m", "cProfile", "-s", "tottime", "-m", "conduit", "--version"], capture_output=True, text=True, timeout=120, env=BUFFERED)
    assert out.returncode == 0, out.stderr
    assert "function calls" in out.stdout


def test_openblas_gets_one_thread_unless_the_environment_says_otherwise() -> None:
    show = "import atexit, os; atexit.register(lambda: print('blas', os.environ.get('OPENBLAS_NUM_THREADS')))"
    env = {k: v for k, v in BUFFERED.items() if k != "OPENBLAS_NUM_THREADS"}
    assert _entry("--version", before=show, env=env).stdout.splitlines()[-1] == "blas 1"
    assert _entry("--version", before=show, env={**env, "OPENBLAS_NUM_THREADS": "3"}).stdout.splitlines()[-1] == "blas 3"
