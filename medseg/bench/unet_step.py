"""Benchmark section ``unet_step``: a training step with a regularizer in every slot.

The network is ``medseg.models.build("unet", 1, 2, base_channels=16, depth=4,
regularizer=key)`` — the CPU-sized U-Net — and a step is: zero the gradients,
forward a batch of 16 images 1×128×128, cross-entropy against a random binary
mask, backward, Adam update (lr 1e-3, the paper's optimiser). Each regularizer's
step is timed side by side with the same U-Net built with ``regularizer=None``
(:func:`medseg.bench.measure.paired_times`, median of the paired ratios); input-level
methods (Cutout, input dropout) act through the model's ``input_regularizer``.

Target (issue 3): the step with Heuristic Dropout ≤ 1.15× the step without. The
other regularizers are reported without a target. ``--quick``: base 4, 32×32,
batch 2, no target checked.
"""

from __future__ import annotations

import itertools
from typing import Callable

import torch

from . import BenchOptions, Row
from .report import fmt, render, result_text

FULL = {"batch": 16, "size": 128, "base_channels": 16, "depth": 4}
QUICK = {"batch": 2, "size": 32, "base_channels": 4, "depth": 4}
TARGETS = {"heuristic": 1.15}
DEFAULT_REPEATS = 15
#: models built per side; the timed calls go round them (see bench_unet_step)
INSTANCES = 3


def make_step(regularizer: str | None, config: dict, device: torch.device, seed: int = 0
              ) -> Callable[[], None]:
    """A closure running one training step of a fresh U-Net with ``regularizer``."""
    from ..models import build

    torch.manual_seed(seed)
    model = build("unet", 1, 2, base_channels=config["base_channels"], depth=config["depth"],
                  regularizer=regularizer).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    b, s = config["batch"], config["size"]
    image = torch.randn(b, 1, s, s, generator=gen).to(device)
    target = torch.randint(0, 2, (b, s, s), generator=gen).to(device)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(image), target)
        loss.backward()
        optimizer.step()

    return step


def rotation(steps: list[Callable[[], None]]) -> Callable[[], None]:
    """A callable that runs ``steps[0]``, ``steps[1]``, … in turn, one per call."""
    turns = itertools.cycle(steps)
    return lambda: next(turns)()


def bench_unet_step(options: BenchOptions) -> list[Row]:
    """One row per regularizer: its step time relative to the plain U-Net's.

    Each side is :data:`INSTANCES` identically built models whose steps are timed in
    turn. Measured here: two *identical* U-Nets, each built once, differed by up to
    ±4 % in step time, consistently over repeats (the instance, not the order, made
    the difference — presumably where their tensors landed in memory), so a single
    pair of models biases the ratio in a way more repeats do not remove.
    """
    from .measure import paired_times
    from .regularizers import select_keys

    device = torch.device(options.device)
    config = QUICK if options.quick else FULL
    repeats = options.repeats_or(DEFAULT_REPEATS)
    baseline = rotation([make_step(None, config, device, seed) for seed in range(INSTANCES)])
    rows = []
    for key in select_keys(options.only):
        options.report(f"unet_step: {key}")
        candidate = rotation([make_step(key, config, device, seed) for seed in range(INSTANCES)])
        timing = paired_times(baseline, candidate, repeats, device, warmup=INSTANCES)
        target = None if options.quick else TARGETS.get(key)
        rows.append({
            "section": "unet_step",
            "name": f"unet step with {key}",
            "key": key,
            "value": timing["ratio"],
            "unit": "× plain step",
            "target": None if target is None else f"≤ {target}",
            "passed": None if target is None else bool(timing["ratio"] <= target),
            "time_s": timing["candidate_s"],
            "baseline_time_s": timing["reference_s"],
            "time_runs_s": timing["candidate_runs_s"],
            "baseline_runs_s": timing["reference_runs_s"],
            "repeats": len(timing["candidate_runs_s"]),
            "model": f"unet base {config['base_channels']} depth {config['depth']}",
            "batch": [config["batch"], 1, config["size"], config["size"]],
            "device": str(device),
            "quick": options.quick,
        })
    return rows


def format_table(rows: list[Row]) -> str:
    return render(
        ["key", "step ms", "plain ms", "× plain", "target", "result"],
        [[r["key"], f"{r['time_s'] * 1e3:.1f}", f"{r['baseline_time_s'] * 1e3:.1f}",
          fmt(r["value"]), r["target"] or "—", result_text(r["passed"])] for r in rows])
