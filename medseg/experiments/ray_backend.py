"""Run the grid on a Ray cluster: one Ray task per run (``medseg experiment --backend ray``).

Ray (https://docs.ray.io) is an optional extra: ``pip install 'medseg[ray]'``.
Each unfinished run of the plan becomes one task of :func:`medseg.experiments.runner.execute_run`
with the run's resource request — ``num_cpus = grid.cpus_per_run`` (default 1) and
``num_gpus = grid.gpus_per_run`` (default 0) — so Ray's scheduler packs as many runs
on each node as its CPUs/GPUs allow (Ray sets ``CUDA_VISIBLE_DEVICES`` and
``OMP_NUM_THREADS`` of each task accordingly). The driver collects the tasks with
``ray.wait`` in the order they finish; :func:`~medseg.experiments.runner.run_experiment`
appends each run's rows to ``results.csv`` as it arrives (the grid's progress bar
counts them), so the file, its columns and the resume rule are those of the local
backend: a run is done when its rows are in ``results.csv``; stopping the driver
(Ctrl-C, a failed run) cancels the unfinished tasks, and the next call redoes them.

Where Ray runs:

* ``address=None``: the Ray instance this process already joined (``ray.init`` was
  called), else a new local one on this machine, shut down afterwards;
* ``address="auto"`` (a node where ``ray start`` ran) or ``"ray://HOST:10001"`` etc.:
  that cluster (``ray.init(address=...)``).

On a cluster every node needs medseg (with the same version) installed and the
paths of the config (``data.root``, ``data.cache_dir``, the experiment folder) on a
shared file system: the tasks read the data and write their run folders there;
relative paths resolve against the driver's working directory (each task changes to
it when the node has that folder).
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Iterator

from ..errors import MedsegError
from .runner import Backend, RunJob

INSTALL_HINT = "--backend ray needs Ray, which is not installed: pip install 'medseg[ray]'"


def import_ray():
    """The ``ray`` module, or a one-line :class:`MedsegError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise MedsegError(INSTALL_HINT) from None
    return ray


def _task(fn: Callable[[RunJob], Any], job: RunJob, cwd: str) -> Any:
    """Body of one Ray task: run ``fn(job)`` from the driver's working directory.

    A Ray node started by ``srun`` (Ray on a SLURM allocation) passes its SLURM
    task variables to its workers; Lightning would take the run for one rank of a
    SLURM job (``SLURM_PROCID``), so they are dropped: a task is a run of its own.
    """
    for key in [k for k in os.environ if k.startswith("SLURM_")]:
        del os.environ[key]
    if os.path.isdir(cwd):
        os.chdir(cwd)
    return fn(job)


class RayBackend(Backend):
    """One Ray task per run, resources from the grid; results yielded as tasks finish."""

    name = "ray"

    def __init__(self, address: str | None = None):
        self.ray = import_ray()
        self.address = address

    def describe(self) -> str:
        return f"ray ({self.address or 'local instance'})"

    # ------------------------------------------------------------------ helpers
    def _connect(self) -> bool:
        """Join a Ray instance; True if this call joined (and so leaves it afterwards:
        a local instance it started stops, a cluster keeps running)."""
        ray = self.ray
        if ray.is_initialized():
            return False
        try:
            ray.init(address=self.address, log_to_driver=True)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"address {self.address!r}" if self.address else "a local Ray instance"
            raise MedsegError(f"--backend ray: cannot start or reach {where}: "
                              f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
                              ) from None
        return True

    def _check_resources(self, jobs: list[RunJob]) -> None:
        """Refuse requests no run can satisfy; warn when no node is big enough yet."""
        for job in jobs:
            t = job.config["train"]
            if t["accelerator"] in ("gpu", "cuda") and job.gpus == 0:
                raise MedsegError(f"run {job.rel_dir}: train.accelerator is {t['accelerator']!r} but "
                                  "grid.gpus_per_run is 0: Ray would give the run no GPU")
            devices = t["devices"]
            n = len(devices) if isinstance(devices, list) else devices if isinstance(devices, int) else None
            if t["accelerator"] in ("gpu", "cuda") and n is not None and job.gpus < n:
                raise MedsegError(f"run {job.rel_dir}: train.devices is {devices!r} but grid.gpus_per_run is "
                                  f"{job.gpus}: a run needs one GPU per device")
        nodes = [n.get("Resources", {}) for n in self.ray.nodes() if n.get("Alive")]
        need_cpu = max(j.cpus for j in jobs)
        need_gpu = max(j.gpus for j in jobs)
        if nodes and not any(r.get("CPU", 0) >= need_cpu and r.get("GPU", 0) >= need_gpu for r in nodes):
            print(f"medseg: warning: no node of the Ray cluster has {need_cpu} CPUs and {need_gpu} GPUs "
                  "free for one run (grid.cpus_per_run / grid.gpus_per_run); the runs wait until one joins",
                  file=sys.stderr)

    def _failure(self, exc: BaseException, job: RunJob) -> BaseException:
        """A task's error as the driver raises it: medseg's one-line errors unwrapped."""
        ray = self.ray
        cause = getattr(exc, "cause", None)
        if isinstance(cause, MedsegError):
            return cause
        if isinstance(exc, ray.exceptions.RayTaskError):
            return exc  # a bug: keep the remote traceback
        text = str(exc).strip().splitlines()
        return MedsegError(f"run {job.rel_dir}: the Ray task failed ({type(exc).__name__}: "
                           f"{text[0] if text else 'no message'})")

    # ------------------------------------------------------------------ map
    def map(self, fn: Callable[[RunJob], Any], jobs: list[RunJob]) -> Iterator[tuple[RunJob, Any]]:
        if not jobs:
            return
        ray = self.ray
        started = self._connect()
        pending: list[Any] = []
        try:
            self._check_resources(jobs)
            remote = ray.remote(_task)
            cwd = os.getcwd()
            by_ref = {}
            for job in jobs:
                ref = remote.options(num_cpus=job.cpus, num_gpus=job.gpus, max_retries=0,
                                     name=f"medseg:{job.rel_dir}").remote(fn, job, cwd)
                by_ref[ref] = job
            pending = list(by_ref)
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    job = by_ref[ref]
                    try:
                        result = ray.get(ref)
                    except Exception as exc:  # noqa: BLE001 - translated, see _failure
                        raise self._failure(exc, job) from None
                    yield job, result
        finally:
            for ref in pending:  # stopped early: the unfinished runs are redone next time
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - already finished or gone
                    pass
            if started:
                ray.shutdown()
