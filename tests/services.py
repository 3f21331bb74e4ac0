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


class Cluster:
    """A throwaway PostgreSQL cluster (``initdb``/``pg_ctl``), removed at interpreter exit.

    :meth:`crash` stops it the way a power cut would (``pg_ctl -m immediate``, no
    shutdown checkpoint), so the next :meth:`start` runs crash recovery.
    """

    def __init__(self) -> None:
        self.data = Path(tempfile.mkdtemp(prefix="conduit-pg-"))
        self.port = _free_port()
        self.uri = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as_postgres: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root: run as the postgres user
            shutil.chown(self.data, "postgres")
            self._as_postgres = ["runuser", "-u", "postgres", "--"]
        subprocess.run([*self._as_postgres, _pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"], check=True, capture_output=True)
        atexit.register(self.remove)
        self.start()

    def _ctl(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([*self._as_postgres, _pg_bin("pg_ctl"), "-D", str(self.data), *args], capture_output=True)

    def start(self) -> None:
        """Start the server and wait until it answers."""
        opts = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._ctl("-o", opts, "-w", "-l", str(self.data / "log"), "start").check_returncode()
        for _ in range(50):
            if _answers(self.uri):
                return
            time.sleep(0.1)
        msg = f"throwaway PostgreSQL on port {self.port} did not answer; see {self.data / 'log'}"
        raise RuntimeError(msg)

    def crash(self) -> None:
        """Stop at once, without a shutdown checkpoint."""
        self._ctl("-m", "immediate", "stop").check_returncode()

    def remove(self) -> None:
        """Stop (if running) and delete the cluster."""
        self._ctl("-m", "immediate", "stop")
        shutil.rmtree(self.data, ignore_errors=True)


def start_cluster() -> str:
    """Start a throwaway cluster; return its URI (stopped at interpreter exit)."""
    return Cluster().uri


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
