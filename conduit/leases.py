"""Run leases: one live run per store and resource.

A run takes a lease on each resource it loads, in the store's ``leases`` table, in one
transaction (the store file's lock serializes writers); a thread renews
``heartbeat_at`` every :data:`HEARTBEAT_S`, and the run releases its leases when it
ends. A lease whose owner is gone is taken over: on the same host when its pid no
longer exists, anywhere when its heartbeat is older than :data:`STALE_S`. An
unfinished run whose lease is alive belongs to a live process and is never resumed by
another one.

Examples
--------
>>> import pathlib, tempfile
>>> from conduit.store import Store
>>> store = Store(pathlib.Path(tempfile.mkdtemp()) / "conduit.duckdb")
>>> lease = Lease(store, "r1", ["events"])
>>> lease.acquire()
>>> Lease(store, "r2", ["events"]).acquire()  # doctest: +ELLIPSIS
Traceback (most recent call last):
conduit.errors.LeaseHeld: resource events is being loaded by run r1 (pid ...)
>>> lease.release()
>>> Lease(store, "r2", ["events"]).acquire()
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
from typing import TYPE_CHECKING, NamedTuple

from conduit.errors import LeaseHeld
from conduit.store import insert_many

if TYPE_CHECKING:
    from conduit.store import Store

HEARTBEAT_S = 5.0
STALE_S = 30.0
WAIT_POLL_S = 1.0
"""How often ``--wait`` tries again."""


class Holder(NamedTuple):
    """A lease's row: who holds a resource."""

    resource: str
    run_id: str
    pid: int
    host: str
    started_at: dt.datetime
    heartbeat_at: dt.datetime

    def alive(self) -> bool:
        """Whether its owner may still be running (same host: its pid exists; fresh heartbeat)."""
        age = (dt.datetime.now(dt.UTC) - self.heartbeat_at).total_seconds()
        if age > STALE_S:
            return False
        if self.host != socket.gethostname():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def describe(self) -> str:
        """One line naming the run, pid and host."""
        return f"resource {self.resource} is being loaded by run {self.run_id} (pid {self.pid} on host {self.host}, started {self.started_at:%Y-%m-%d %H:%M:%S%z})"


def live_holders(store: Store) -> list[Holder]:
    """Every lease in the store whose owner is alive."""
    if not store.path.exists():
        return []
    with store.connect() as con:
        rows = con.execute("SELECT resource, run_id, pid, host, started_at, heartbeat_at FROM leases").fetchall()
    return [h for h in (Holder(*r) for r in rows) if h.alive()]


class Lease:
    """The leases of one run on its resources (acquire, heartbeat, release)."""

    def __init__(self, store: Store, run_id: str, resources: list[str]):
        self.store, self.run_id, self.resources = store, run_id, sorted(set(resources))
        self.pid, self.host = os.getpid(), socket.gethostname()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> None:
        """Take every lease at once, or none: :class:`LeaseHeld` names a live holder."""
        with self.store.connect() as con:
            con.execute("BEGIN")
            try:
                marks = ", ".join("?" * len(self.resources))
                rows = con.execute(f"SELECT resource, run_id, pid, host, started_at, heartbeat_at FROM leases WHERE resource IN ({marks})", self.resources).fetchall()
                for holder in (Holder(*r) for r in rows):
                    if holder.run_id != self.run_id and holder.alive():
                        raise LeaseHeld(holder.describe())
                con.execute(f"DELETE FROM leases WHERE resource IN ({marks})", self.resources)
                insert_many(con, "INSERT INTO leases SELECT c0, c1, c2, c3, now(), now() FROM {rows}", [(r, self.run_id, self.pid, self.host) for r in self.resources])
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def start_heartbeat(self, every_s: float = HEARTBEAT_S) -> None:
        """Renew the leases from a daemon thread until :meth:`release`."""
        self._thread = threading.Thread(target=self._beat, args=(every_s,), daemon=True, name="conduit-lease")
        self._thread.start()

    def _beat(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            try:
                with self.store.connect() as con:
                    con.execute("UPDATE leases SET heartbeat_at = now() WHERE run_id = ? AND pid = ?", [self.run_id, self.pid])
            except Exception:  # noqa: BLE001, S112 - a missed beat is retried; the run itself reports store errors
                continue

    def release(self) -> None:
        """Stop the heartbeat and drop this run's leases."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self.store.connect() as con:
            con.execute("DELETE FROM leases WHERE run_id = ? AND pid = ?", [self.run_id, self.pid])
