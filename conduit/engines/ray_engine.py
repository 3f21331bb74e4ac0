"""The Ray engine: a load's part jobs run as Ray tasks; the driver keeps store, checkpoints and publish.

``conduit run --engine ray [--address ADDR]`` (or ``engine: {type: ray}`` in ingest.yml)
sends every part job (:class:`~conduit.engines.base.PartJob`) of a load to a Ray task
that reads, coerces, checks and stages it (:mod:`conduit.engines.ray_worker`). The
driver -- this process -- keeps everything the contract of :mod:`conduit.engines.base`
gives it: the local store, the checkpoints, the lease, the dead-letter gather and the
one atomic publish per load, so the guarantees are those of a local run.

What travels to a worker: the job and the load's plan
(:class:`~conduit.engines.ray_worker.RemotePlan`: ingest.yml's path and text as written,
the load, the target types, the incremental state, the batch size: no connector
options, so no expanded secret). The worker rebuilds its connectors from ingest.yml
with ``${VAR}`` expanded from *its own* environment: the cluster's (``ray start`` run
with the variables set, a KubeRay pod's env from a Kubernetes secret; a local Ray
started for the run inherits this process's). ``forward_env: true`` sends the values of
the variables ingest.yml uses in the job's Ray ``runtime_env`` instead, which Ray's
runtime-env agent writes into its log files: an opt-in for clusters whose logs are as
private as the credentials.

Where a chunk is staged depends on :attr:`Capabilities.remote_stage
<conduit.connectors.base.Capabilities.remote_stage>`: a destination that any process
may stage into (PostgreSQL: a chunk commits with its ledger row on the worker's own
connection) is staged by the worker; any other (a DuckDB file, which one process holds)
gets the worker's good batches shipped back (Arrow IPC) in the task's result, which the
driver stages chunk by chunk, in order, before it checkpoints them. Dead letters the
worker wrote come back too, for a driver on another machine. A job that reads a stream
only the driver holds (a query's cursor), and every job of a resource with a ``unique``
check (``parallelism`` 1), runs in the driver.

A worker that dies (a killed process, a lost node) is retried by Ray (``max_retries``);
the retry asks the destination's ledger which of its chunks committed and does not
stage them again (:mod:`conduit.engines.ray_worker`), so the load stays exact. Errors
the job raises (bad input, a failing check) are not retried by Ray: they reach the
driver as the job's own exception, as with the local engine.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, cast

from conduit import _env, _secrets
from conduit.engines.base import PartJob, PartOutcome, PartRunner
from conduit.engines.local import LocalEngine
from conduit.errors import ConduitError, ConfigError, UsageError, WorkerLost

if TYPE_CHECKING:
    from pathlib import Path

    from conduit.engines.part_job import JobRunner

MISSING = "the ray engine needs Ray: pip install 'conduit-load[ray]'"
MAX_RETRIES = 3
"""How often Ray runs a part job again after its worker died (not after the job raised)."""
WORKER_HOOKS = {"CONDUIT_WORKER_FAULT": "CONDUIT_FAULT", "CONDUIT_WORKER_PAUSE": "CONDUIT_PAUSE"}
"""Crash-test hooks (:mod:`conduit.crash_points`) set in the driver's environment, handed to workers only."""
_VAR = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)")


def import_ray() -> Any:
    """The ``ray`` module, or a :class:`UsageError` (exit 2) naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise UsageError(MISSING) from None
    return ray


def referenced_variables(text: str) -> list[str]:
    """The names of the ``${VAR}`` s a config text uses (``$${...}`` is an escape, not a use).

    Examples
    --------
    >>> referenced_variables("uri: ${PG_URL}\\npath: ${DATA:-data}/ $${NOT_ME} ${PG_URL}")
    ['PG_URL', 'DATA']
    """
    return list(dict.fromkeys(_VAR.findall(text)))


def worker_env(config_path: Path, forward: bool, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment variables a worker gets: the values of the config's ``${VAR}`` s (when ``forward``) and the crash-test hooks.

    Values come from this process's environment, then the ``.env`` beside the config,
    as :func:`conduit.project.load_project` reads them. Each value is registered as a
    secret, so no message of this run prints it.
    """
    environ = os.environ if environ is None else environ
    out: dict[str, str] = {}
    if forward:
        known = {**_env.read_dotenv(config_path.parent / ".env"), **environ}
        for name in referenced_variables(config_path.read_text(encoding="utf-8")):
            if name in known:
                out[name] = known[name]
                _secrets.register(known[name])
    for driver_name, worker_name in WORKER_HOOKS.items():
        if driver_name in environ:
            out[worker_name] = environ[driver_name]
    return out


class RayEngine(LocalEngine):
    """Resources on driver threads (as :class:`LocalEngine`), their part jobs as Ray tasks.

    Parameters
    ----------
    config_path
        The run's ingest.yml (workers rebuild the connectors from it).
    workers
        Resources at once, and part jobs at once per resource; default: the cluster's CPUs.
    address
        The cluster (``host:port``, ``ray://host:10001``, ``auto``); None: ``RAY_ADDRESS``,
        else a local cluster started for this run.
    env
        Environment variables for the workers (:func:`worker_env`).
    target
        The run's target (:mod:`conduit.targets`): workers rebuild the connectors under it.
    """

    name: ClassVar[str] = "ray"

    def __init__(self, config_path: Path, workers: int | None = None, address: str | None = None, env: Mapping[str, str] | None = None, target: str | None = None):
        self.ray = import_ray()
        self.config_path, self.target = config_path, target
        self._owned = False
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self._connect(dict(env or {}))
        cpus = int(self.ray.cluster_resources().get("CPU", 1))
        super().__init__(workers or max(2, cpus))

    def _connect(self, env: dict[str, str]) -> None:
        ray = self.ray
        if ray.is_initialized():  # an embedding program connected already: its runtime_env stands
            return
        runtime_env = {"env_vars": env} if env else None
        try:
            ray.init(address=self.address, runtime_env=runtime_env, log_to_driver=False, logging_level=logging.WARNING, include_dashboard=False if self.address is None else None)
        except ConnectionError as exc:
            msg = f"cannot reach the Ray cluster at {self.address}: {_secrets.redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)}"
            raise ConfigError(msg) from None
        self._owned = True

    def map_parts(self, runner: PartRunner, jobs: Iterable[PartJob], parallelism: int) -> Iterator[PartOutcome]:
        """See :meth:`Engine.map_parts`; with ``parallelism`` 1 (a ``unique`` check keeps its keys here) the jobs run in the driver."""
        if parallelism <= 1:
            yield from super().map_parts(runner, jobs, parallelism)
            return
        yield from self._remote(runner, iter(jobs), parallelism)

    def _remote(self, runner: PartRunner, jobs: Iterator[PartJob], parallelism: int) -> Iterator[PartOutcome]:
        """Keep ``parallelism`` tasks running; land (ship-back: stage) and yield each outcome as it finishes."""
        from conduit.engines import ray_worker

        ray = self.ray
        job_runner = cast("JobRunner", runner)
        job_runner.plan.load.detached = True  # chunks commit in workers: no shortcut that needs them in this process
        task = ray.remote(ray_worker.run_part_job).options(max_retries=MAX_RETRIES, retry_exceptions=False, num_cpus=1)
        shared = ray.put(ray_worker.RemotePlan.of(job_runner, self.config_path, self.target))
        running: dict[Any, PartJob] = {}
        error: BaseException | None = None
        try:
            while True:
                job = next(jobs, None) if error is None and len(running) < parallelism else None
                if job is not None:
                    if ray_worker.read_in_driver(job_runner, job):
                        yield job_runner(job)  # a query's cursor is read where it was opened (the driver lists the next part after it)
                    else:
                        running[task.remote(shared, job)] = job
                    continue
                if not running:
                    break
                done, _ = ray.wait(list(running), num_returns=1)
                for ref in done:
                    job = running.pop(ref)
                    try:
                        result = ray.get(ref)
                    except Exception as exc:  # noqa: BLE001 - the job's own error, or a lost worker
                        error = error or self._unwrap(exc, job)
                        continue
                    finally:
                        ray_worker.release(job_runner, job)
                    if error is None:
                        yield ray_worker.land(job_runner, result)
            if error is not None:
                raise error
        except KeyboardInterrupt:
            for ref in running:  # stop the jobs as a crash would: the ledger keeps what committed, --resume goes on from it
                ray.cancel(ref, force=True)
            raise
        finally:
            if running:  # the driver stopped early: the running jobs end (or die) before it aborts or records anything
                ray.wait(list(running), num_returns=len(running))

    def _unwrap(self, exc: Exception, job: PartJob) -> BaseException:
        """The job's own exception from a :class:`ray.exceptions.RayTaskError`, or :class:`WorkerLost`."""
        ray = self.ray
        if isinstance(exc, ray.exceptions.RayTaskError):
            cause = getattr(exc, "cause", None)
            if isinstance(cause, BaseException):
                return cause
            return ConduitError(_secrets.redact(str(exc).splitlines()[-1]))
        if isinstance(exc, ray.exceptions.RayError):
            names = ", ".join(p.name for p in job.parts)
            msg = f"{job.resource}: the Ray worker running {names} was lost {MAX_RETRIES + 1} times ({type(exc).__name__})"
            return WorkerLost(msg)
        return exc

    def close(self) -> None:
        """Disconnect from the cluster (and stop it, when this run started it)."""
        if self._owned:
            self.ray.shutdown()
            self._owned = False
