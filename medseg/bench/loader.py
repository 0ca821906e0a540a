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
    from ..config import load_config
    from ..data import synth_pancreas
    from ..data.datamodule import SegmentationDataModule
    from ..data.splits import make_split
    from ..training.module import SegmentationModule

    with tempfile.TemporaryDirectory(prefix="medseg-bench-") as tmp:
        tmp = Path(tmp)
        size, slices, cases = (32, 8, 5) if quick else (128, 48, 12)
        root = synth_pancreas(tmp / "pancreas", cases=cases, size=size, slices=slices, seed=0)
        overrides = [f"data.root={root}", f"data.cache_dir={tmp / 'cache'}", "train.progress_bar=false"]
        if quick:
            overrides += ["data.size=[32,32]", "data.num_cases=5", "data.split=[3,1,1]",
                          "model.base_channels=4", "model.depth=2"]
        cfg = load_config(CPU_CONFIG, overrides)
        split = make_split(cfg["data"])
        dm = SegmentationDataModule(cfg, split, progress=False)
        dm.prepare_data()
        torch.manual_seed(0)
        dm.setup("fit")
        loader = dm.train_dataloader()
        n_slices = len(dm.train_set)

        module = SegmentationModule(cfg)
        module.train()
        opt = module.configure_optimizers()
        batches = [b for _, b in zip(range(steps), iter(loader))]
        batch_size = batches[0]["image"].shape[0]

        def load_pass() -> float:
            t0 = time.perf_counter()
            count = sum(b["image"].shape[0] for b in loader)
            return count / (time.perf_counter() - t0)

        def train_steps() -> float:
            t0 = time.perf_counter()
            count = 0
            for b in batches:
                opt.zero_grad(set_to_none=True)
                loss = _step(module, b)  # training_step minus Lightning's logging
                loss.backward()
                opt.step()
                count += b["image"].shape[0]
            return count / (time.perf_counter() - t0)

        load_pass(), train_steps()  # warm-up
        loads, trains = [], []
        for _ in range(1 if quick else repeats):
            loads.append(load_pass())
            trains.append(train_steps())
    load_rate, train_rate = statistics.median(loads), statistics.median(trains)
    ratio = load_rate / train_rate
    common = {"section": "loader", "slices": n_slices, "batch_size": batch_size,
              "num_workers": cfg["data"]["num_workers"], "size": cfg["data"]["size"]}
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
