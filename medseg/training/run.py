"""One training run and its evaluation, writing a self-contained run folder.

``RUN_DIR/``
  ``config.yaml``             the resolved config (every key, defaults filled in)
  ``split.json``              the cases of train/val/test (see :mod:`medseg.data.splits`)
  ``plan.json``               nnunet datasets (and data.normalisation: plan): the plan (labels, channels, normalisation, slice
                              axis; :mod:`medseg.data.plan`), also in every checkpoint
  ``checkpoints/best.ckpt``   best validation DICE; ``checkpoints/last.ckpt`` end of the last epoch
  ``logs/``                   CSV (``metrics.csv``) and TensorBoard logs
  ``metrics.json``            test-set summary (mean/std/median of DICE, IoU, HD95, NSD; pooled
                              scores; the empty-case conventions and the aggregation;
                              ``distance_unit`` of HD95: mm for CT, px for BAGLS frames); with
                              several labels the headline is the mean over labels and
                              ``labels`` holds the same summary per label name
  ``cases.csv``               one row per test case: case_id, dice, iou, voxel counts, hd95
                              (in ``distance_unit``), nsd; with several labels the mean over
                              labels, then ``<metric>_<label>`` columns per label

``--resume`` continues from ``last.ckpt`` (saved at every epoch end, so a run
killed mid-epoch loses at most that epoch).

Several devices (``train.devices``, ``train.strategy: ddp``, ``train.num_nodes``):
Lightning's DDP runs one process per device. Started as a plain ``medseg train``,
Lightning's launcher re-executes the same command once per extra device (those
processes carry ``LOCAL_RANK``/``NODE_RANK``); under SLURM ``srun`` starts every
process itself (``SLURM_PROCID``), under ``torchrun`` ``RANK`` is set. Only the
process of global rank 0 (:func:`launcher_rank_is_zero`, known before any Trainer
exists) prepares the run folder (``--force`` replacement, ``split.json``,
``config.yaml``); the other ranks draw the same split from the config themselves
(or read it on ``--resume``) and never write to the folder — checkpoints, logs,
``metrics.json`` and ``cases.csv`` come from rank 0 alone. Validation and test
cases are sharded by Lightning's ``DistributedSampler`` and the per-case rows
gathered across ranks (:mod:`medseg.training.module`), so each case counts once.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from ..config import dump_config, resolve_path, validate
from ..config_files import read_yaml
from ..data.datamodule import SegmentationDataModule
from ..data.splits import load_split, resolve_split, save_split
from ..errors import CheckpointError, ConfigError, MedsegError
from ..io import (_is_cwd_or_parent, atomic_dir, atomic_write_bytes, atomic_write_text,
                  check_removable, csv_text, folder_kind, folder_lock, mark_folder,
                  remove_medseg_folder, replace_dir, stale_temporaries)
from .checkpoint import (AtomicCheckpointIO, compatibility_problem, load_checkpoint,
                         newest_complete_checkpoint, remove_partial_saves)
from .module import SegmentationModule

RUN_FILES = ("config.yaml", "split.json", "metrics.json", "cases.csv")


def _quiet_lightning() -> None:
    import logging

    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*_pytree.*")
    warnings.filterwarnings("ignore", message=".*number of training batches.*")
    warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
    warnings.filterwarnings("ignore", message=".*Checkpoint directory.*exists and is not empty.*")
    # val/test scores are gathered across ranks by the module itself: equal on every rank
    warnings.filterwarnings("ignore", message=".*sync_dist=True.*")
    # ... and the sampler's padding repeats are dropped there, so each case counts once
    warnings.filterwarnings("ignore", message=".*Using `DistributedSampler` with the dataloaders.*")


def _precision(train: Mapping[str, Any]) -> str:
    p = train["precision"]
    if p == "auto":
        return "16-mixed" if torch.cuda.is_available() and train["accelerator"] in ("auto", "gpu", "cuda") else "32-true"
    return "32-true" if p == "32" else p


def _history_csv_logger():
    """Lightning's CSVLogger that appends to an existing ``metrics.csv`` (a resumed run keeps
    the rows of its finished epochs; Lightning's own deletes the file)."""
    from lightning_fabric.loggers.logger import rank_zero_experiment
    from pytorch_lightning.loggers import CSVLogger
    from pytorch_lightning.loggers.csv_logs import ExperimentWriter

    class HistoryWriter(ExperimentWriter):
        def _check_log_dir_exists(self) -> None:
            import csv

            if os.path.isfile(self.metrics_file_path):
                with open(self.metrics_file_path, newline="") as fh:
                    self.metrics_keys = list(csv.DictReader(fh).fieldnames or [])

    class _HistoryCSVLogger(CSVLogger):
        @property
        @rank_zero_experiment
        def experiment(self):
            if self._experiment is None:
                os.makedirs(self.root_dir, exist_ok=True)
                self._experiment = HistoryWriter(log_dir=self.log_dir)
            return self._experiment

    return _HistoryCSVLogger


def HistoryCSVLogger(*args, **kwargs):  # noqa: N802 - a class factory (imports Lightning lazily)
    return _checked_logger(_history_csv_logger(), lambda lg: os.path.join(lg.log_dir, "metrics.csv"))(
        *args, **kwargs)


def _os_error_in(exc: BaseException | None) -> OSError | None:
    """The OSError behind ``exc`` (itself, or its cause or context, as loggers wrap it)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _checked_logger(base: type, where: Callable[[Any], str]) -> type:
    """``base`` (a Lightning logger) whose write failures (a full disk, a file size limit,
    an I/O error: Lightning's TensorBoard logger turns them into a ValueError about the
    value logged) are one :class:`MedsegError` naming the log file or folder. After an
    earlier failure, ``finalize`` only closes quietly (its flush would fail again)."""

    def failure(self, exc: BaseException) -> BaseException:
        from ..errors import describe_os_error

        found = _os_error_in(exc)
        if found is None:
            return exc
        reason = describe_os_error(OSError(found.errno, found.strerror or str(found)))
        return MedsegError(f"{str(where(self)).rstrip(os.sep)}: cannot write the "
                           f"training log ({reason})")

    def checked(name: str):
        method = getattr(base, name)

        def call(self, *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - a logger's write failed
                mapped = failure(self, exc)
                if mapped is exc:
                    raise
                raise mapped from None

        call.__name__ = name
        return call

    def finalize(self, status: str) -> None:
        try:
            base.finalize(self, status)
        except Exception as exc:  # noqa: BLE001
            mapped = failure(self, exc)
            if status == "success" and mapped is not exc:
                raise mapped from None
            if status == "success":
                raise

    return type(f"Checked{base.__name__}", (base,), {
        **{n: checked(n) for n in ("log_metrics", "log_hyperparams", "save")}, "finalize": finalize})


def _quiet_writer_threads(writer: Any) -> None:
    """TensorBoard writes its events from a thread that, on a full disk, also prints its
    traceback when it ends; the failure is reported by the next log call (as one line),
    so that thread's own report is silenced."""
    writers = list((getattr(writer, "all_writers", None) or {}).values()) or [getattr(writer, "file_writer", None)]
    for fw in writers:
        worker = getattr(getattr(getattr(fw, "event_writer", None), "_async_writer", None), "_worker", None)
        if worker is not None and hasattr(worker, "_invoke_excepthook"):
            worker._invoke_excepthook = lambda thread: None


def CheckedTensorBoardLogger(*args, **kwargs):  # noqa: N802 - a class factory (imports Lightning lazily)
    from pytorch_lightning.loggers import TensorBoardLogger

    class QuietTensorBoardLogger(TensorBoardLogger):
        @property
        def experiment(self):
            writer = TensorBoardLogger.experiment.fget(self)
            _quiet_writer_threads(writer)
            return writer

    return _checked_logger(QuietTensorBoardLogger, lambda lg: lg.log_dir)(*args, **kwargs)


def make_trainer(cfg: Mapping[str, Any], run_dir: Path | None, *, progress: bool = True,
                 for_eval: bool = False):
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import LearningRateMonitor

    from .checkpoint import run_model_checkpoint

    t = cfg["train"]
    callbacks, loggers = [], False
    if not for_eval and run_dir is not None:
        callbacks.append(run_model_checkpoint(
            dirpath=run_dir / "checkpoints", filename="best", monitor="val_dice", mode="max",
            save_top_k=1, enable_version_counter=False, auto_insert_metric_name=False,
        ))
        # last.ckpt at every epoch end: Lightning's save_last=True saves it only in epochs
        # that improved the best, so a run killed later would lose every epoch since then
        callbacks.append(run_model_checkpoint(
            dirpath=run_dir / "checkpoints", filename="last", save_top_k=1,
            save_on_train_epoch_end=True, enable_version_counter=False, auto_insert_metric_name=False,
        ))
        callbacks.append(LearningRateMonitor(logging_interval="step"))  # `lr-Adam` in the logs
        loggers = [HistoryCSVLogger(run_dir, name="logs", version=""),
                   CheckedTensorBoardLogger(run_dir, name="logs", version="", default_hp_metric=False)]
    return pl.Trainer(
        accelerator=t["accelerator"], devices=t["devices"] if not for_eval else 1,
        strategy=t["strategy"] if not for_eval else "auto",
        num_nodes=t["num_nodes"] if not for_eval else 1, precision=_precision(t),
        max_epochs=t["epochs"], limit_train_batches=t["limit_train_batches"],
        check_val_every_n_epoch=t["check_val_every_n_epoch"],
        log_every_n_steps=t["log_every_n_steps"], deterministic=t["deterministic"],
        callbacks=callbacks, logger=loggers, enable_progress_bar=progress and t["progress_bar"],
        enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=run_dir,
        plugins=[AtomicCheckpointIO()],
    )


def is_distributed(cfg: Mapping[str, Any]) -> bool:
    """Whether the run may use more than one process: several devices (``auto``
    counts, it means all GPUs of the node) or several nodes."""
    t = cfg["train"]
    devices = t["devices"]
    several = devices == "auto" or (isinstance(devices, list) and len(devices) > 1) or (
        isinstance(devices, int) and devices > 1)
    return several or t["num_nodes"] > 1


def launcher_rank_is_zero() -> bool:
    """Whether this process is global rank 0 of a multi-process run, or not part of one.

    Decided from the environment a launcher sets *before* the Trainer exists:
    ``RANK`` (torchrun), ``SLURM_PROCID`` (``srun``, when Lightning would use its
    SLURM environment), and ``NODE_RANK``/``LOCAL_RANK`` (the processes that
    Lightning's own subprocess launcher re-executes, and other nodes of a manual
    multi-node launch). A process with none of them is rank 0.
    """
    from lightning_fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    env = os.environ
    if TorchElasticEnvironment.detect():
        return int(env.get("RANK", "0")) == 0
    if SLURMEnvironment.detect():
        return int(env.get("SLURM_PROCID", "0")) == 0
    return int(env.get("NODE_RANK", env.get("GROUP_RANK", "0")) or 0) == 0 \
        and int(env.get("LOCAL_RANK", "0") or 0) == 0


def _setup_process(cfg: Mapping[str, Any]) -> None:
    import pytorch_lightning as pl

    _quiet_lightning()
    if cfg["train"]["num_threads"]:
        torch.set_num_threads(cfg["train"]["num_threads"])
        if is_distributed(cfg):
            # Lightning's DDP launcher sets torch threads to cores/processes unless
            # OMP_NUM_THREADS is set; the variable also reaches the processes it starts.
            os.environ["OMP_NUM_THREADS"] = str(cfg["train"]["num_threads"])
    pl.seed_everything(cfg["seed"], workers=True, verbose=False)


#: what a run folder holds (glob patterns): ``--force`` replaces a run holding nothing else;
#: ``.*.tmp*`` are the temporary files of atomic writes cut by a kill
RUN_ENTRIES = ("config.yaml", "split.json", "plan.json", "checkpoints", "logs", "metrics*.json", "cases*.csv",
               "drops*.csv", "drops*.png", ".*.tmp*")
#: config keys holding paths: stored absolute in a run folder's config.yaml
PATH_KEYS = ("root", "cache_dir", "split_file")


def staging_dir(run_dir: Path) -> Path:
    """Where a new run (or a --force replacement) trains until it is complete: ``.<name>.new``."""
    return run_dir.parent / f".{run_dir.name}.new"


def absolute_paths(cfg: Mapping[str, Any], base: str | os.PathLike) -> dict[str, Any]:
    """``cfg`` with its ``data`` paths made absolute (relative ones resolved against ``base``)."""
    out = {**cfg, "data": dict(cfg["data"])}
    for key in PATH_KEYS:
        value = out["data"].get(key)
        if value:
            out["data"][key] = os.path.abspath(resolve_path(value, base))
    return out


def read_run_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The resolved config of a run folder; relative paths resolve against the folder.

    Raises :class:`MedsegError` naming ``config.yaml`` when it is missing, not
    YAML, not a mapping or not a valid config.
    """
    run_dir = Path(run_dir)
    cfg_file = run_dir / "config.yaml"
    if not run_dir.is_dir():
        raise MedsegError(f"{run_dir}: run folder not found")
    if not cfg_file.is_file():
        raise MedsegError(f"{run_dir}: not a run folder (no config.yaml)")
    try:
        cfg = validate(read_yaml(cfg_file))
    except ConfigError as exc:
        msg = str(exc)
        raise ConfigError(msg if msg.startswith(str(cfg_file)) else f"{cfg_file}: {msg}") from None
    return absolute_paths(cfg, run_dir)


def _has_checkpoint(work: Path) -> bool:
    return (work / "checkpoints" / "last.ckpt").is_file()


def _recover_swap(run_dir: Path) -> None:
    """Finish or undo a promotion that was killed between its two renames: only medseg's
    own uniquely named backups of this run (:func:`~medseg.io.stale_temporaries`, a run
    folder by its marker) — a user's ``.<name>.old`` is never touched."""
    for old in stale_temporaries(run_dir, "old"):
        if folder_kind(old) != "run":
            continue
        if not os.path.lexists(run_dir):
            os.replace(old, run_dir)
        else:
            with contextlib.suppress(MedsegError, OSError):
                remove_medseg_folder(old, "run", RUN_ENTRIES)


@dataclass
class RunPlan:
    """Where a run trains (``work``), where it ends up (``target``), its split and
    the checkpoint it continues from."""

    target: Path
    work: Path
    split: dict[str, Any]
    resume_from: Path | None = None
    resume_epoch: int | None = None


def plan_resume(run_dir: Path, cfg: dict[str, Any], *, writer: bool = True) -> RunPlan:
    """``--resume``: the interrupted staged run if there is one, else the run folder itself."""
    staged = staging_dir(run_dir)
    work = staged if staged.is_dir() and folder_kind(staged) == "run" else run_dir
    if not (work / "config.yaml").is_file():
        raise MedsegError(f"{run_dir}: nothing to resume (no run folder and no interrupted run)")
    saved = read_run_config(work)
    for section in ("data", "model", "regularizer", "seed"):
        if saved[section] != cfg[section]:
            raise MedsegError(f"{work / 'config.yaml'}: the run was started with a different "
                              f"'{section}' config; resume with the same config")
    split = load_split(work / "split.json", cfg["data"]["dataset"])
    path, epoch, skipped = newest_complete_checkpoint(work / "checkpoints", cfg)
    if path is None and skipped:
        raise CheckpointError(f"{skipped[0]}; no complete checkpoint to resume from "
                              "(use --force to start the run again)")
    done = 0 if epoch is None else epoch + 1
    if done > cfg["train"]["epochs"]:  # before anything is written (the log keeps its rows)
        raise ConfigError(f"config key 'train.epochs' is {cfg['train']['epochs']} but the run has already "
                          f"trained {done} epochs ({path}); resume with train.epochs >= {done}, or "
                          "train a new run")
    if writer:
        for line in skipped:
            print(f"medseg: skipped {line}", file=sys.stderr)
        remove_partial_saves(work / "checkpoints")
        keep_history(work / "logs" / "metrics.csv", -1 if epoch is None else epoch)
        print(f"resuming from {path} (epoch {epoch + 1} done)" if path is not None
              else f"resuming {work}: no checkpoint saved yet, starting at epoch 1")
    return RunPlan(run_dir, work, split, path, epoch)


def plan_fresh(run_dir: Path, cfg: dict[str, Any], *, force: bool, writer: bool = True) -> RunPlan:
    """A new run: every check first, then the run's files in a staging folder.

    Nothing is removed here: an old run is replaced only when the new one is
    complete (:func:`promote`); with ``--force`` it must be a medseg run folder.
    """
    if _is_cwd_or_parent(run_dir):
        raise MedsegError(f"{run_dir}: is the current folder or one of its parents; choose a new "
                          "folder for the run")
    if run_dir.exists() and not run_dir.is_dir():
        raise MedsegError(f"{run_dir}: exists and is not a folder")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if not force:
            raise MedsegError(f"{run_dir}: run folder exists and is not empty "
                              "(use --resume to continue it or --force to replace it)")
    if _empty_folder(run_dir) and os.path.ismount(run_dir):
        raise MedsegError(f"{run_dir}: is a mount point; the run is renamed into place when complete, "
                          "so choose a folder inside it")
    if os.path.lexists(run_dir) and not _empty_folder(run_dir):
        # what promote() checks again at the end: refused now, not after training
        check_removable(run_dir, "run", RUN_ENTRIES)
    staged = staging_dir(run_dir)
    if staged.exists():
        if _has_checkpoint(staged) and not force:
            raise MedsegError(f"{staged}: an interrupted run of {run_dir} is waiting (its epochs are "
                              "saved): continue it with --resume or discard it with --force")
        check_removable(staged, "run", RUN_ENTRIES)
    split = resolve_split(cfg["data"])
    if not split["val"]:
        raise MedsegError("the split has no validation cases: model selection (best checkpoint) "
                          "needs at least one")
    if not split["test"]:  # checked now, not after training: the run ends by scoring the test cases
        where = cfg["data"].get("split_file") or "the split"
        raise MedsegError(f"{where}: the split has no test cases: a run ends by scoring its test "
                          "split, which needs at least one")
    if writer:
        with atomic_dir(staged) as tmp:  # an old staged run is dropped only now
            mark_folder(tmp, "run")
            save_split(split, tmp / "split.json")
            dump_config(cfg, tmp / "config.yaml")
            from ..data.plan import dataset_plan, uses_plan

            if uses_plan(cfg["data"]):  # how its cases are normalised and sliced
                atomic_write_text(tmp / "plan.json", json.dumps(dataset_plan(cfg["data"]), indent=1) + "\n")
    return RunPlan(run_dir, staged, split)


def prepare_run_dir(run_dir: Path, cfg: dict[str, Any], *, resume: bool, force: bool) -> RunPlan:
    """Check and prepare a run; returns its :class:`RunPlan` (every check before any write).

    Only global rank 0 writes anything: the other ranks of a DDP run (a config with
    several devices or nodes and :func:`launcher_rank_is_zero` false) get the same
    plan — the split drawn from the config (deterministic: ``data.split_seed`` or
    ``data.split_file``) or, on resume, read from ``split.json`` — and leave the
    folders alone.
    """
    run_dir = Path(os.path.abspath(run_dir))
    writer = not (is_distributed(cfg) and not launcher_rank_is_zero())
    if writer:
        _recover_swap(run_dir)
    if resume:
        return plan_resume(run_dir, cfg, writer=writer)
    return plan_fresh(run_dir, cfg, force=force, writer=writer)


def promote(plan: RunPlan) -> None:
    """Move a complete staged run onto its folder (the old run, checked again, goes last)."""
    if plan.work == plan.target:
        return
    if _empty_folder(plan.target):
        # an empty folder named as --out (or a link's target): the run takes its place;
        # rmdir fails if anything appeared in it meanwhile, so nothing is lost
        os.rmdir(plan.target)
    elif plan.target.exists():
        check_removable(plan.target, "run", RUN_ENTRIES)
    replace_dir(plan.work, plan.target)


def _empty_folder(path: Path) -> bool:
    """Whether ``path`` is a real (not linked) folder with nothing in it."""
    return path.is_dir() and not path.is_symlink() and not any(path.iterdir())


def keep_history(metrics_csv: Path, epoch: int) -> None:
    """Keep the CSV log rows of the epochs up to ``epoch`` (those of a lost epoch go)."""
    import csv

    if not metrics_csv.is_file():
        return
    with open(metrics_csv, newline="") as fh:
        reader = csv.DictReader(fh)
        columns, rows = reader.fieldnames or [], list(reader)
    kept = [r for r in rows if not r.get("epoch") or float(r["epoch"]) <= epoch]
    atomic_write_text(metrics_csv, csv_text(columns, ({c: r.get(c) or "" for c in columns} for r in kept)))


def _interruptible(trainer, call, *args, **kwargs):
    """``call(*args, **kwargs)`` (a Trainer's fit/test); Ctrl-C, which Lightning turns into
    ``sys.exit(1)``, stays a KeyboardInterrupt (the CLI: ``medseg: interrupted``, exit 130)."""
    import signal

    try:
        return call(*args, **kwargs)
    except SystemExit:
        if trainer.interrupted:
            with contextlib.suppress(ValueError):  # Lightning ignored further Ctrl-C
                signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt from None
        raise


def _fit(trainer, module, dm, ckpt_path: Path | None) -> None:
    _interruptible(trainer, trainer.fit, module, datamodule=dm,
                   ckpt_path=None if ckpt_path is None else str(ckpt_path))


def _after_failure(plan: RunPlan, interrupted: bool) -> None:
    """A staged run that failed: keep it when it has epochs to resume, else remove it."""
    if plan.work == plan.target:
        return
    if _has_checkpoint(plan.work):
        if interrupted:
            print(f"medseg: the run's completed epochs are kept in {plan.work}; continue with "
                  "--resume", file=sys.stderr)
        return
    with contextlib.suppress(MedsegError, OSError):
        remove_medseg_folder(plan.work, "run", RUN_ENTRIES)


def train_run(cfg: dict[str, Any], run_dir: str | os.PathLike, *, resume: bool = False,
              force: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train, keep the best/last checkpoints, evaluate the best on the test split.

    The run trains in a staging folder next to ``run_dir`` and is renamed into
    place when its test evaluation is written (``--resume`` of a finished run
    continues in place); the folder is locked while it trains.
    """
    run_dir = usable_run_dir(Path(os.path.abspath(run_dir)))
    cfg = absolute_paths(cfg, Path.cwd())
    check_trainer_settings(cfg)
    if is_distributed(cfg) and not launcher_rank_is_zero():
        return _train(prepare_run_dir(run_dir, cfg, resume=resume, force=force), cfg, progress)
    with folder_lock(run_dir, "run"):
        plan = prepare_run_dir(run_dir, cfg, resume=resume, force=force)
        try:
            summary = _train(plan, cfg, progress)
        except BaseException as exc:
            _after_failure(plan, isinstance(exc, KeyboardInterrupt))
            raise
        promote(plan)
    return summary


def usable_run_dir(run_dir: Path) -> Path:
    """The folder a run goes to, decided before any work: a symbolic link to a folder is
    followed (the run is written into the folder it names; the link itself is left alone);
    a dangling link, or a link to something that is not a folder, is refused."""
    for above in run_dir.parents:  # the nearest existing folder above must be a folder
        if os.path.lexists(above):
            if not above.is_dir():
                raise MedsegError(f"{above}: is not a folder, so the run folder {run_dir} cannot be "
                                  "made inside it")
            break
    if not run_dir.is_symlink():
        return run_dir
    target = Path(os.path.realpath(run_dir))
    if not target.exists():
        raise MedsegError(f"{run_dir}: is a symbolic link to {os.readlink(run_dir)}, which does not "
                          "exist; create that folder or choose another --out")
    if not target.is_dir():
        raise MedsegError(f"{run_dir}: is a symbolic link to {target}, which is not a folder")
    return target


#: what a Trainer setting Lightning refuses is about: words of its message → the config key
_TRAINER_KEYS = (("strategy", "strategy"), ("precision", "precision"), ("num_nodes", "num_nodes"),
                 ("device", "devices"), ("accelerator", "accelerator"), ("gpu", "accelerator"),
                 ("backend", "accelerator"), ("cuda", "accelerator"), ("mps", "accelerator"))


def check_trainer_settings(cfg: Mapping[str, Any]) -> None:
    """ConfigError naming the key when Lightning would refuse ``train.accelerator``,
    ``devices``, ``strategy``, ``num_nodes`` or ``precision`` on this machine — found by
    building the run's Trainer once, without a folder, before anything is read or written
    (else the refusal would come as a traceback when training starts)."""
    t = cfg["train"]
    devices = t["devices"]
    cores = os.cpu_count() or 1
    on_cpu = t["accelerator"] == "cpu" or (t["accelerator"] == "auto" and not torch.cuda.is_available())
    if on_cpu and isinstance(devices, int) and devices > max(2, cores):
        raise ConfigError(f"config key 'train.devices' is {devices}: that many training processes on "
                          f"the CPU, which has {cores} cores")
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    _quiet_lightning()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            make_trainer(cfg, None, progress=False)
    except (MisconfigurationException, ValueError, TypeError, RuntimeError) as exc:
        why = " ".join(str(exc).split())[:200] or type(exc).__name__
        low = why.lower()
        sub = next((k for word, k in _TRAINER_KEYS if word in low), None)
        named = f"config key 'train.{sub}' ({t[sub]!r})" if sub else (
            f"config keys train.accelerator/devices/strategy ({t['accelerator']!r}/{devices!r}/{t['strategy']!r})")
        raise ConfigError(f"{named}: {why}") from None


def _train(plan: RunPlan, cfg: dict[str, Any], progress: bool) -> dict[str, Any]:
    _setup_process(cfg)
    dm = SegmentationDataModule(cfg, plan.split, progress=progress)
    module = SegmentationModule(cfg)
    trainer = make_trainer(cfg, plan.work, progress=progress)
    _fit(trainer, module, dm, plan.resume_from)
    if trainer.is_global_zero:
        best, last = (plan.work / "checkpoints" / n for n in ("best.ckpt", "last.ckpt"))
        if not best.is_file():  # e.g. val never ran: the last epoch is the best we have
            atomic_write_bytes(best, last.read_bytes())
    if trainer.world_size > 1:
        trainer.strategy.barrier()
    return evaluate_run(plan.work, split="test", checkpoint="best", progress=progress,
                        trainer=trainer, module=module, datamodule=dm, cfg=cfg)


def resolve_checkpoint(run_dir: Path, checkpoint: str) -> Path:
    if checkpoint in ("best", "last"):
        return run_dir / "checkpoints" / f"{checkpoint}.ckpt"
    return Path(checkpoint)


def _shown_path(path: Path, run_dir: Path) -> str:
    """A checkpoint path as stored in metrics.json: relative inside the run, else absolute."""
    full = Path(os.path.abspath(path))
    try:
        return str(full.relative_to(Path(os.path.abspath(run_dir))))
    except ValueError:
        return str(full)


def evaluate_run(run_dir: str | os.PathLike, *, split: str = "test", checkpoint: str = "best",
                 progress: bool = True, trainer=None, module=None, datamodule=None,
                 cfg: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Score a checkpoint on a split of the run; write metrics/cases files (rank 0).

    A checkpoint from elsewhere (``checkpoint`` = a path) must match the run's
    dataset, preprocessing and model, else :class:`CheckpointError`.
    """
    run_dir = Path(run_dir)
    cfg = dict(cfg) if cfg is not None else read_run_config(run_dir)
    split_data = load_split(run_dir / "split.json", cfg["data"]["dataset"])
    if not split_data.get(split):  # before anything is read or written: the old files stay
        raise MedsegError(f"{run_dir / 'split.json'}: the '{split}' split has no cases; nothing to evaluate")
    ckpt_path = resolve_checkpoint(run_dir, checkpoint)
    ckpt = load_checkpoint(ckpt_path)  # weights_only=True: refuses code-carrying pickles
    problem = compatibility_problem(ckpt["medseg"], cfg)
    if problem is not None:
        raise CheckpointError(f"{ckpt_path}: does not belong to the run {run_dir}: {problem}")
    if trainer is None:
        _setup_process(cfg)
        trainer = make_trainer(cfg, None, progress=progress, for_eval=True)
    if module is None:
        module = SegmentationModule(cfg)
    try:
        module.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{ckpt_path}: incompatible with the run's model ({str(exc).splitlines()[0]})") from None
    if datamodule is None:
        datamodule = SegmentationDataModule(cfg, split_data, progress=progress)
    if trainer.local_rank == 0:  # under DDP the cache is built by one process per node
        datamodule.prepare_data()
    if trainer.world_size > 1:
        trainer.strategy.barrier("medseg-prepare")
    _interruptible(trainer, trainer.test, module, dataloaders=datamodule.case_dataloader(split), verbose=False)
    summary = dict(module.test_summary)
    summary.update({"split": split, "checkpoint": _shown_path(ckpt_path, run_dir), "epoch": ckpt.get("epoch"),
                    "dataset": cfg["data"]["dataset"], "model": cfg["model"]["name"],
                    "regularizer": cfg["regularizer"], "seed": cfg["seed"]})
    if trainer.is_global_zero:
        suffix = "" if split == "test" else f"_{split}"
        atomic_write_text(run_dir / f"metrics{suffix}.json", json.dumps(_jsonable(summary), indent=1) + "\n")
        atomic_write_text(run_dir / f"cases{suffix}.csv", cases_csv(module.test_rows))
    return summary


CASE_COLUMNS = ("case_id", "dice", "iou", "pred_voxels", "label_voxels", "intersection", "hd95", "nsd")


def cases_csv(rows) -> str:
    """One row per case; with several labels also ``dice_<label>``, ``iou_<label>``,
    ``hd95_<label>``, ``nsd_<label>`` per label (a binary dataset's file is unchanged)."""
    rows = [r.as_row() for r in rows]
    extra = [c for c in (rows[0] if rows else {}) if c not in CASE_COLUMNS]
    return csv_text((*CASE_COLUMNS, *extra), rows)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj
