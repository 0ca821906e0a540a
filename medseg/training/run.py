"""One training run and its evaluation, writing a self-contained run folder.

``RUN_DIR/``
  ``config.yaml``             the resolved config (every key, defaults filled in)
  ``split.json``              the cases of train/val/test (see :mod:`medseg.data.splits`)
  ``checkpoints/best.ckpt``   best validation DICE; ``checkpoints/last.ckpt`` end of the last epoch
  ``logs/``                   CSV (``metrics.csv``) and TensorBoard logs
  ``metrics.json``            test-set summary (mean/std/median of DICE, IoU, HD95, NSD; pooled
                              scores; the empty-case conventions and the aggregation)
  ``cases.csv``               one row per test case: case_id, dice, iou, voxel counts, hd95 (mm), nsd

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

import json
import math
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Mapping

import torch
import yaml

from ..config import dump_config, validate
from ..data.datamodule import SegmentationDataModule
from ..data.splits import load_split, resolve_split, save_split
from ..errors import MedsegError
from ..io import atomic_write_text, csv_text
from .checkpoint import load_checkpoint
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


def make_trainer(cfg: Mapping[str, Any], run_dir: Path | None, *, progress: bool = True,
                 for_eval: bool = False):
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

    t = cfg["train"]
    callbacks, loggers = [], False
    if not for_eval and run_dir is not None:
        callbacks.append(ModelCheckpoint(
            dirpath=run_dir / "checkpoints", filename="best", monitor="val_dice", mode="max",
            save_top_k=1, save_last=True, enable_version_counter=False,
            auto_insert_metric_name=False,
        ))
        loggers = [CSVLogger(run_dir, name="logs", version=""),
                   TensorBoardLogger(run_dir, name="logs", version="", default_hp_metric=False)]
    return pl.Trainer(
        accelerator=t["accelerator"], devices=t["devices"] if not for_eval else 1,
        strategy=t["strategy"] if not for_eval else "auto",
        num_nodes=t["num_nodes"] if not for_eval else 1, precision=_precision(t),
        max_epochs=t["epochs"], limit_train_batches=t["limit_train_batches"],
        check_val_every_n_epoch=t["check_val_every_n_epoch"],
        log_every_n_steps=t["log_every_n_steps"], deterministic=t["deterministic"],
        callbacks=callbacks, logger=loggers, enable_progress_bar=progress and t["progress_bar"],
        enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=run_dir,
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


def prepare_run_dir(run_dir: Path, cfg: dict[str, Any], *, resume: bool, force: bool) -> dict[str, Any]:
    """Create/check the run folder; returns the split the run uses.

    Only global rank 0 creates or replaces anything: the other ranks of a DDP run
    (a config with several devices or nodes and :func:`launcher_rank_is_zero`
    false) return the same split — drawn from the
    config (deterministic: ``data.split_seed`` or ``data.split_file``) or, on
    resume, read from ``split.json`` — and leave the folder alone.
    """
    if is_distributed(cfg) and not launcher_rank_is_zero():
        if resume:
            return load_split(run_dir / "split.json", cfg["data"]["dataset"])
        return resolve_split(cfg["data"])
    if resume:
        last = run_dir / "checkpoints" / "last.ckpt"
        if not last.is_file():
            raise MedsegError(f"{last}: nothing to resume (no last checkpoint)")
        saved = validate(yaml.safe_load((run_dir / "config.yaml").read_text()))
        for section in ("data", "model", "regularizer"):
            if saved[section] != cfg[section] or saved["seed"] != cfg["seed"]:
                raise MedsegError(f"{run_dir / 'config.yaml'}: the run was started with a different "
                                  f"'{section}'/seed config; resume with the same config")
        return load_split(run_dir / "split.json", cfg["data"]["dataset"])
    if run_dir.exists() and any(run_dir.iterdir()) and not force:
        raise MedsegError(f"{run_dir}: run folder exists and is not empty "
                          "(use --resume to continue it or --force to replace it)")
    # every check before anything is written or, with --force, the old run is removed
    split = resolve_split(cfg["data"])
    if not split["val"]:
        raise MedsegError("the split has no validation cases: model selection (best checkpoint) "
                          "needs at least one")
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_split(split, run_dir / "split.json")
    dump_config(cfg, run_dir / "config.yaml")
    return split


def train_run(cfg: dict[str, Any], run_dir: str | os.PathLike, *, resume: bool = False,
              force: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train, keep the best/last checkpoints, evaluate the best on the test split."""
    run_dir = Path(run_dir)
    split = prepare_run_dir(run_dir, cfg, resume=resume, force=force)
    _setup_process(cfg)
    dm = SegmentationDataModule(cfg, split, progress=progress)
    module = SegmentationModule(cfg)
    trainer = make_trainer(cfg, run_dir, progress=progress)
    last = run_dir / "checkpoints" / "last.ckpt"
    trainer.fit(module, datamodule=dm, ckpt_path=str(last) if resume else None)
    if trainer.is_global_zero:
        best = run_dir / "checkpoints" / "best.ckpt"
        if not best.is_file():  # e.g. val never ran: the last epoch is the best we have
            shutil.copyfile(last, best)
    if trainer.world_size > 1:
        trainer.strategy.barrier()
    return evaluate_run(run_dir, split="test", checkpoint="best", progress=progress,
                        trainer=trainer, module=module, datamodule=dm)


def resolve_checkpoint(run_dir: Path, checkpoint: str) -> Path:
    if checkpoint in ("best", "last"):
        return run_dir / "checkpoints" / f"{checkpoint}.ckpt"
    return Path(checkpoint)


def evaluate_run(run_dir: str | os.PathLike, *, split: str = "test", checkpoint: str = "best",
                 progress: bool = True, trainer=None, module=None, datamodule=None) -> dict[str, Any]:
    """Score a checkpoint on a split of the run; write metrics/cases files (rank 0)."""
    run_dir = Path(run_dir)
    cfg_file = run_dir / "config.yaml"
    if not cfg_file.is_file():
        raise MedsegError(f"{run_dir}: not a run folder (no config.yaml)")
    cfg = validate(yaml.safe_load(cfg_file.read_text()))
    split_data = load_split(run_dir / "split.json", cfg["data"]["dataset"])
    ckpt_path = resolve_checkpoint(run_dir, checkpoint)
    ckpt = load_checkpoint(ckpt_path)  # weights_only=True: refuses code-carrying pickles
    if trainer is None:
        _setup_process(cfg)
        trainer = make_trainer(cfg, None, progress=progress, for_eval=True)
    if module is None:
        module = SegmentationModule(cfg)
    try:
        module.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as exc:
        raise MedsegError(f"{ckpt_path}: incompatible with the run's model ({str(exc).splitlines()[0]})") from None
    if datamodule is None:
        datamodule = SegmentationDataModule(cfg, split_data, progress=progress)
    if trainer.local_rank == 0:  # under DDP the cache is built by one process per node
        datamodule.prepare_data()
    if trainer.world_size > 1:
        trainer.strategy.barrier("medseg-prepare")
    trainer.test(module, dataloaders=datamodule.case_dataloader(split), verbose=False)
    summary = dict(module.test_summary)
    summary.update({"split": split, "checkpoint": str(ckpt_path), "epoch": ckpt.get("epoch"),
                    "dataset": cfg["data"]["dataset"], "model": cfg["model"]["name"],
                    "regularizer": cfg["regularizer"], "seed": cfg["seed"]})
    if trainer.is_global_zero:
        suffix = "" if split == "test" else f"_{split}"
        atomic_write_text(run_dir / f"metrics{suffix}.json", json.dumps(_jsonable(summary), indent=1) + "\n")
        atomic_write_text(run_dir / f"cases{suffix}.csv", cases_csv(module.test_rows))
    return summary


CASE_COLUMNS = ("case_id", "dice", "iou", "pred_voxels", "label_voxels", "intersection", "hd95", "nsd")


def cases_csv(rows) -> str:
    return csv_text(CASE_COLUMNS, (r.as_row() for r in rows))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj
