"""A real, small Ray cluster on loopback for the Ray engine's tests.

:class:`LocalRayCluster` runs ``ray start --head`` plus a second node process
(``ray start --address``), one CPU each, a small object store and no dashboard, with
their own ``--temp-dir``; :meth:`LocalRayCluster.stop` kills only the processes of
this cluster (found by that temp dir and ports), never ``ray stop`` (which stops every
Ray cluster of the user on the machine).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

OBJECT_STORE_BYTES = 100_000_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ray_cli() -> str:
    found = Path(sys.executable).parent / "ray"
    return str(found) if found.exists() else (shutil.which("ray") or "ray")


class LocalRayCluster:
    """A head node and one more node process, one CPU each, on 127.0.0.1."""

    def __init__(self, root: Path, env: dict[str, str] | None = None, object_store_bytes: int = OBJECT_STORE_BYTES):
        self.root = root
        self.object_store_bytes = object_store_bytes
        self.env = env or {}  # the nodes' own environment, which workers inherit (credentials, as on KubeRay)
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.client_port = _free_port()

    def _start(self, args: list[str], temp: Path) -> None:
        env = {**os.environ, **self.env, "RAY_USAGE_STATS_ENABLED": "0"}
        for key in ("CONDUIT_FAULT", "CONDUIT_PAUSE", "RAY_ADDRESS"):
            env.pop(key, None)
        cmd = [_ray_cli(), "start", "--node-ip-address=127.0.0.1", "--num-cpus=1", f"--object-store-memory={self.object_store_bytes}", f"--temp-dir={temp}", "--disable-usage-stats", *args]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180, check=False)
        if done.returncode != 0:
            self.stop()
            msg = f"ray start failed ({done.returncode}): {done.stderr[-2000:]}"
            raise RuntimeError(msg)

    def start(self) -> LocalRayCluster:
        """Start the head node, then the second node, and wait until both joined."""
        temp = self.root / "ray"  # Ray keeps socket paths under it: short paths only
        self._start(["--head", f"--port={self.port}", f"--ray-client-server-port={self.client_port}", "--include-dashboard=false"], temp)
        self._start([f"--address={self.address}"], temp)
        self._wait_nodes(2)
        return self

    def _wait_nodes(self, n: int, timeout_s: float = 60.0) -> None:
        code = f"import ray; ray.init(address={self.address!r}, log_to_driver=False); print(sum(1 for x in ray.nodes() if x['Alive'])); ray.shutdown()"
        deadline = time.monotonic() + timeout_s
        while True:
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
            if out.returncode == 0 and out.stdout.strip().splitlines()[-1:] == [str(n)]:
                return
            if time.monotonic() > deadline:
                msg = f"the Ray cluster at {self.address} did not reach {n} nodes: {out.stdout[-500:]} {out.stderr[-1000:]}"
                raise RuntimeError(msg)
            time.sleep(1)

    def processes(self) -> list[object]:
        """This cluster's processes (and their children, the workers)."""
        import psutil

        marks = (str(self.root), f":{self.port}")
        found: dict[int, psutil.Process] = {}
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = " ".join(proc.info["cmdline"] or [])
            if "ray" in cmdline and any(m in cmdline for m in marks):
                found[proc.pid] = proc
                with contextlib.suppress(psutil.NoSuchProcess):
                    found.update({c.pid: c for c in proc.children(recursive=True)})
        found.pop(os.getpid(), None)
        return list(found.values())

    def workers(self) -> list[object]:
        """The worker processes running a task (``ray::<task>``, not idle ones)."""
        out = []
        for proc in self.processes():
            try:
                title = " ".join(proc.cmdline())  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - gone meanwhile
                continue
            if title.startswith("ray::") and not title.startswith(("ray::IDLE", "ray::DashboardAgent", "ray::RuntimeEnvAgent")):
                out.append(proc)
        return out

    def stop(self) -> None:
        """SIGKILL this cluster's processes only."""
        import psutil

        procs = self.processes()
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()  # type: ignore[attr-defined]
        psutil.wait_procs(procs, timeout=20)  # type: ignore[arg-type]
