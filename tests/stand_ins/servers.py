"""Local stand-ins for the warehouse destinations, started once per test process.

- Snowflake: fakesnow's server (``fakesnow -s``) in a subprocess on a free loopback port.
- BigQuery: ``bqemulator`` from its own virtualenv (``tests/stand_ins/setup_bqemulator.sh``
  creates it: it needs a pinned DuckDB with the spatial extension).

Each starter returns connection facts or raises :class:`StandInUnavailable` with the
reason. :func:`require` turns that into a test failure in CI (``CI`` set) and a skip
elsewhere. Servers stop at interpreter exit (SIGTERM, then SIGKILL).
``CONDUIT_TEST_BIGQUERY_EMULATOR`` (an ``http://host:port`` endpoint) skips starting one.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BQ_PROJECT = "test-proj"


class StandInUnavailable(RuntimeError):
    """A stand-in server could not be set up or started."""


@dataclass(frozen=True)
class Endpoint:
    """Where a stand-in listens."""

    host: str
    port: int

    @property
    def url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.host}:{self.port}"


def require(starter: functools._lru_cache_wrapper) -> Endpoint:  # type: ignore[type-arg]
    """The stand-in's endpoint; fail in CI, skip locally, when it cannot run."""
    import pytest

    try:
        return starter()
    except StandInUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"stand-in unavailable in CI: {exc}", pytrace=False)
        pytest.skip(f"stand-in unavailable: {exc}")
        raise  # unreachable


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _spawn(cmd: list[str], ports: list[int], name: str, ready: str | None = None, timeout: float = 60.0) -> subprocess.Popen[bytes]:
    for port in ports:
        if _port_open(port):
            msg = f"{name}: port {port} is already taken (a leftover server?)"
            raise StandInUnavailable(msg)
    log = tempfile.NamedTemporaryFile(prefix=f"conduit-{name}-", suffix=".log", delete=False)  # noqa: SIM115 - kept for the error message
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=tempfile.gettempdir())
    atexit.register(_stop, proc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = Path(log.name).read_text(errors="replace")[-1500:]
            msg = f"{name} exited with {proc.returncode}: {tail}"
            raise StandInUnavailable(msg)
        if all(_port_open(p) for p in ports):
            if ready is None:
                return proc
            try:
                with urllib.request.urlopen(ready, timeout=2):
                    return proc
            except OSError:
                pass
        time.sleep(0.2)
    _stop(proc)
    msg = f"{name} did not answer within {timeout:.0f}s; log: {log.name}"
    raise StandInUnavailable(msg)


@functools.cache
def fakesnow() -> Endpoint:
    """Start fakesnow's server; its endpoint."""
    exe = shutil.which("fakesnow", path=str(Path(sys.executable).parent)) or shutil.which("fakesnow")
    if exe is None:
        msg = "fakesnow is not installed (pip install 'fakesnow[server]' 'snowflake-connector-python<5')"
        raise StandInUnavailable(msg)
    port = _free_port()
    _spawn([exe, "-s", "--host", "127.0.0.1", "-p", str(port)], [port], "fakesnow", timeout=30)
    return Endpoint("127.0.0.1", port)


def bqemulator_executable() -> Path:
    """The bqemulator of ``.venv-bqemu`` (set up by the script when missing)."""
    venv = Path(os.environ.get("CONDUIT_BQEMU_VENV", ROOT / ".venv-bqemu"))
    script = ROOT / "tests" / "stand_ins" / "setup_bqemulator.sh"
    exe = venv / "bin" / "bqemulator"
    if exe.exists() and (venv / ".conduit-pins").exists():
        return exe
    done = subprocess.run(["bash", str(script), str(venv)], capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0 or not exe.exists():
        msg = f"setting up bqemulator failed ({script}): {done.stderr.strip()[-1000:]}"
        raise StandInUnavailable(msg)
    return exe


@functools.cache
def bqemulator() -> Endpoint:
    """Start bqemulator (REST + gRPC) for project ``test-proj``; its REST endpoint."""
    given = os.environ.get("CONDUIT_TEST_BIGQUERY_EMULATOR")
    if given:
        host, _, port = given.removeprefix("http://").partition(":")
        return Endpoint(host, int(port))
    exe = bqemulator_executable()
    rest, grpc = _free_port(), _free_port()
    cmd = [str(exe), "start", "--rest-host", "127.0.0.1", "--rest-port", str(rest), "--grpc-host", "127.0.0.1", "--grpc-port", str(grpc), "--ephemeral", "--project", BQ_PROJECT]
    _spawn(cmd, [rest, grpc], "bqemulator", ready=f"http://127.0.0.1:{rest}/bigquery/v2/projects/{BQ_PROJECT}/datasets", timeout=90)
    return Endpoint("127.0.0.1", rest)


if __name__ == "__main__":
    for starter in (fakesnow, bqemulator):
        try:
            print(f"{starter.__name__}: {starter().url}")
        except StandInUnavailable as exc:
            print(f"{starter.__name__}: unavailable: {exc}")
            sys.exit(1)
