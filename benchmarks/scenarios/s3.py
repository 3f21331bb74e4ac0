"""TPC-H lineitem Parquet read from S3 (moto on loopback) into DuckDB, against the same load from a local file.

The baseline is conduit itself reading the local Parquet file, so the ratio is the cost
of object storage (ranged GETs through Polars' object-store client, HTTP to moto)
rather than of conduit. moto runs in its own process (started once, stopped at exit),
so its in-memory copy of the object is not counted in conduit's peak RSS; the file is
uploaded once per scale factor, untimed, in ``prepare``.
"""

from __future__ import annotations

import atexit
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from benchmarks.harness import Env, Scenario, conduit_argv

CREDS = {"key": "testing", "secret": "testing"}
_server: dict[str, object] = {}  # endpoint, process, uploaded: {sf: bucket}


def _endpoint() -> str:
    """moto's server in a child process on a free loopback port (one per benchmark run)."""
    if "endpoint" in _server:
        return str(_server["endpoint"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    atexit.register(proc.terminate)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        proc.terminate()
        msg = f"moto server did not start on port {port}"
        raise RuntimeError(msg)
    _server.update(endpoint=f"http://127.0.0.1:{port}", process=proc, uploaded={})
    return str(_server["endpoint"])


def _storage(endpoint: str) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in {**CREDS, "endpoint_url": endpoint}.items()) + "}"


def prepare(env: Env) -> None:
    """Upload lineitem.parquet once per scale factor; write the S3 and the local config."""
    import s3fs

    endpoint = _endpoint()
    uploaded: dict[float, str] = _server["uploaded"]  # type: ignore[assignment]
    if env.sf not in uploaded:
        bucket = f"tpch-{uuid.uuid4().hex[:8]}"
        fs = s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True, **CREDS)
        fs.mkdir(bucket)
        fs.put(str(env.data / "parquet" / "lineitem.parquet"), f"{bucket}/lineitem/lineitem.parquet")
        uploaded[env.sf] = bucket
    bucket = uploaded[env.sf]
    for name, path, extra in (
        ("s3", f"s3://{bucket}/lineitem", f", storage_options: {_storage(endpoint)}"),
        ("local", str(env.data / "parquet"), ""),
    ):
        (env.work / f"{name}.yml").write_text(
            f"""version: 1
state_path: .conduit/{name}.duckdb
sources:
  - {{name: tpch, type: parquet, path: "{path}"{extra}}}
destinations:
  - {{name: wh, type: duckdb, path: {name}.duckdb}}
resources:
  - {{name: lineitem, source: tpch, destination: wh, path: lineitem.parquet, write_mode: replace}}
"""
        )


def verify(env: Env) -> int:
    """Rows in ``main.lineitem`` of the S3 run's DuckDB file, counted by DuckDB."""
    import duckdb

    with duckdb.connect(str(Path(env.work) / "s3.duckdb"), read_only=True) as con:
        return int(con.execute("SELECT count(*) FROM main.lineitem").fetchall()[0][0])


SCENARIOS = [
    Scenario(
        name="s3_parquet_to_duckdb",
        baseline_name="conduit local parquet -> duckdb",
        prepare=prepare,
        command=lambda env: conduit_argv(env.work / "s3.yml"),
        baseline=lambda env: conduit_argv(env.work / "local.yml"),
        verify=verify,
    )
]
