"""Real services for the test suite: PostgreSQL and moto's S3 server.

PostgreSQL: ``CONDUIT_TEST_POSTGRES_URI`` if set; else the server on 127.0.0.1:5432
if it answers; else a throwaway cluster started here with ``initdb``/``pg_ctl``
(stopped at exit). In CI (``CI`` set) failing to get one is an error, never a skip.

``python tests/services.py check`` prints which PostgreSQL the suite will use.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_URI = "postgresql://postgres@127.0.0.1:5432/test"


def _answers(uri: str) -> bool:
    try:
        import adbc_driver_postgresql.dbapi as pg
    except ImportError:
        return False
    try:
        with pg.connect(uri) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchall()
        return True
    except Exception:  # noqa: BLE001
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for root in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (root / name).exists():
            return str(root / name)
    msg = f"{name} not found: install PostgreSQL (e.g. apt-get install postgresql) or set CONDUIT_TEST_POSTGRES_URI"
    raise RuntimeError(msg)


def start_cluster() -> str:
    """Start a throwaway cluster; return its URI (stopped at interpreter exit)."""
    data = Path(tempfile.mkdtemp(prefix="conduit-pg-"))
    port = _free_port()
    user_args: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run as the postgres user
        shutil.chown(data, "postgres")
        user_args = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*user_args, _pg_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"], check=True, capture_output=True)
    subprocess.run(
        [*user_args, _pg_bin("pg_ctl"), "-D", str(data), "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off", "-w", "-l", str(data / "log"), "start"],
        check=True,
        capture_output=True,
    )

    def stop() -> None:
        subprocess.run([*user_args, _pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)

    atexit.register(stop)
    uri = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    for _ in range(50):
        if _answers(uri):
            return uri
        time.sleep(0.1)
    msg = f"throwaway PostgreSQL on port {port} did not answer; see {data / 'log'}"
    raise RuntimeError(msg)


def postgres_uri() -> str:
    """The PostgreSQL the tests use (see module docstring)."""
    uri = os.environ.get("CONDUIT_TEST_POSTGRES_URI")
    if uri:
        if not _answers(uri):
            msg = f"CONDUIT_TEST_POSTGRES_URI={uri} does not answer"
            raise RuntimeError(msg)
        return uri
    if _answers(DEFAULT_URI):
        return DEFAULT_URI
    return start_cluster()


def start_moto() -> tuple[str, object]:
    """Start moto's S3 server on a free loopback port; return (endpoint, server)."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return f"http://127.0.0.1:{port}", server


if __name__ == "__main__" and sys.argv[1:] == ["check"]:
    print(f"PostgreSQL for tests: {postgres_uri()}")
