"""Benchmark: the cached-slice loader against training throughput.

Target (issue 4): data loading never starves training — the training
DataLoader of the CPU config (``configs/cpu/pancreas_unet.yaml``: cached 128×128
slices, MONAI augmentation, batch 16, ``data.num_workers`` workers) delivers at
least 5× the slices per second that a training step of the same config consumes
(U-Net base 16, depth 4: forward, cross-entropy, backward, Adam step).

Set-up: the default synthetic Pancreas-CT set (12 scans of 128×128×48) written
to a temporary folder, its slice cache built once (not timed). Loader: full
passes over the shuffled training set, slices/s. Training: ``steps`` optimizer
steps on batches taken from the same loader beforehand (so the step time has no
loading in it). Medians over repeats, interleaved.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

TARGET_RATIO = 5.0
CPU_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "cpu" / "pancreas_unet.yaml"


def bench_loader(repeats: int = 3, steps: int = 6, quick: bool = False) -> list[dict[str, Any]]:
    """The ``loader`` rows: loader and training throughput (slices/s) and their ratio."""
    from ..data.datamodule import SegmentationDataModule
    from ..data.splits import make_split
    from ..training.module import SegmentationModule

    with tempfile.TemporaryDirectory(prefix="medseg-bench-") as tmp:
        cfg = _synthetic_config(Path(tmp), quick)
        split = make_split(cfg["data"])
        dm = SegmentationDataModule(cfg, split, progress=False)
        dm.prepare_data()
        torch.manual_seed(0)
        dm.setup("fit")
        loader = dm.train_dataloader()

        module = SegmentationModule(cfg)
        module.train()
        opt = module.configure_optimizers()
        batches = [b for _, b in zip(range(steps), iter(loader))]

        _load_rate(loader), _train_rate(module, opt, batches)  # warm-up
        loads, trains = [], []
        for _ in range(1 if quick else repeats):
            loads.append(_load_rate(loader))
            trains.append(_train_rate(module, opt, batches))
        common = {"section": "loader", "slices": len(dm.train_set),
                  "batch_size": batches[0]["image"].shape[0],
                  "num_workers": cfg["data"]["num_workers"], "size": cfg["data"]["size"]}
    return _rows(statistics.median(loads), statistics.median(trains), common, quick)


def _synthetic_config(tmp: Path, quick: bool) -> dict[str, Any]:
    """The CPU config over a synthetic Pancreas-CT set written under ``tmp`` (``quick``: tiny)."""
    from ..config import load_config
    from ..data import synth_pancreas

    size, slices, cases = (32, 8, 5) if quick else (128, 48, 12)
    root = synth_pancreas(tmp / "pancreas", cases=cases, size=size, slices=slices, seed=0)
    overrides = [f"data.root={root}", f"data.cache_dir={tmp / 'cache'}", "train.progress_bar=false",
                 "train.lr_schedule=constant"]  # the timed steps are Adam steps; poly needs a Trainer
    if quick:
        overrides += ["data.size=[32,32]", "data.num_cases=5", "data.split=[3,1,1]",
                      "model.base_channels=4", "model.depth=2"]
    return load_config(CPU_CONFIG, overrides)


def _load_rate(loader) -> float:
    """Slices per second of one full pass over ``loader``."""
    t0 = time.perf_counter()
    count = sum(b["image"].shape[0] for b in loader)
    return count / (time.perf_counter() - t0)


def _train_rate(module, opt, batches: list[dict[str, torch.Tensor]]) -> float:
    """Slices per second of optimizer steps on the pre-loaded ``batches``."""
    t0 = time.perf_counter()
    count = 0
    for b in batches:
        opt.zero_grad(set_to_none=True)
        loss = _step(module, b)  # training_step minus Lightning's logging
        loss.backward()
        opt.step()
        count += b["image"].shape[0]
    return count / (time.perf_counter() - t0)


def _rows(load_rate: float, train_rate: float, common: dict[str, Any], quick: bool) -> list[dict[str, Any]]:
    ratio = load_rate / train_rate
    return [
        {**common, "name": "loader throughput (augmented, cached)", "value": round(load_rate, 1),
         "unit": "slices/s"},
        {**common, "name": "training throughput (U-Net step)", "value": round(train_rate, 1),
         "unit": "slices/s"},
        {**common, "name": "loader / training", "value": round(ratio, 2), "unit": "×",
         "target": f"≥ {TARGET_RATIO}", "passed": None if quick else ratio >= TARGET_RATIO},
    ]


def _step(module, batch) -> torch.Tensor:
    from ..training.losses import supervised_loss

    return supervised_loss(module.loss, module.model(batch["image"]), batch["label"])
