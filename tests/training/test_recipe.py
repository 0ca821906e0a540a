"""The training recipe: Dice over the batch and the foreground, the poly schedule, LR logging."""

from __future__ import annotations

import csv
from types import SimpleNamespace

import pytest
import torch
from monai.losses import DiceCELoss

from medseg.training.losses import build_loss
from medseg.training.module import SegmentationModule, poly_factor


def _batch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 2, 16, 16, generator=g)
    target = torch.zeros(4, 1, 16, 16)
    target[0, 0, 4:9, 4:9] = 1  # one slice with foreground, three empty ones
    return logits, target


@pytest.mark.parametrize("name", ["dice_ce", "ce_dice_ssim"])
@pytest.mark.parametrize("batch,background", [(True, False), (False, True)])
def test_dice_term_follows_the_config(name, batch, background):
    logits, target = _batch()
    loss = build_loss(name, "pancreas", dice_batch=batch, dice_include_background=background)
    ref = DiceCELoss(to_onehot_y=True, softmax=True, batch=batch, include_background=background)
    value = loss(logits, target)
    if name == "dice_ce":
        assert torch.allclose(value, ref(logits, target))
    else:  # the SSIM term is added on top
        ssim = loss.ssim(torch.softmax(logits, 1)[:, 1:2], target)
        assert torch.allclose(value, ref(logits, target) + ssim)


def test_default_dice_does_not_reward_empty_slices():
    """Per-slice Dice with background scores an all-background prediction on empty slices
    as perfect; the batch/foreground Dice does not."""
    _, target = _batch()
    all_background = torch.stack([torch.full((4, 16, 16), 8.0), torch.full((4, 16, 16), -8.0)], 1)
    old = build_loss("dice_ce", "pancreas", dice_batch=False, dice_include_background=True)
    new = build_loss("dice_ce", "pancreas")
    assert new(all_background, target) > old(all_background, target) + 0.4


def test_poly_factor_values():
    f = poly_factor(100, 0.9)
    assert f(0) == 1.0
    assert f(50) == pytest.approx(0.5 ** 0.9)
    assert f(99) == pytest.approx(0.01 ** 0.9)
    assert f(100) == 0.0 and f(150) == 0.0
    assert poly_factor(10, 0.0)(5) == 1.0


def test_configure_optimizers_steps_the_poly_schedule(pancreas_cfg):
    cfg = {**pancreas_cfg, "train": {**pancreas_cfg["train"], "lr_schedule": "poly", "lr": 0.01,
                                     "poly_exponent": 0.9}}
    module = SegmentationModule(cfg)
    module._trainer = SimpleNamespace(estimated_stepping_batches=20)
    conf = module.configure_optimizers()
    assert conf["lr_scheduler"]["interval"] == "step"
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    seen = []
    for _ in range(20):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([0.01 * (1 - s / 20) ** 0.9 for s in range(20)])


def test_constant_schedule_is_a_bare_optimizer(pancreas_cfg):
    cfg = {**pancreas_cfg, "train": {**pancreas_cfg["train"], "lr_schedule": "constant"}}
    assert isinstance(SegmentationModule(cfg).configure_optimizers(), torch.optim.Adam)


@pytest.mark.slow
def test_a_run_with_the_recipe_logs_the_lr(pancreas_cfg, tmp_path):
    from medseg.training.run import train_run

    cfg = {**pancreas_cfg, "data": {**pancreas_cfg["data"], "foreground_fraction": 0.5},
           "train": {**pancreas_cfg["train"], "lr_schedule": "poly", "epochs": 2, "log_every_n_steps": 1}}
    run = tmp_path / "run"
    train_run(cfg, run, progress=False)
    with open(run / "logs" / "metrics.csv") as fh:
        lrs = [float(r["lr-Adam"]) for r in csv.DictReader(fh) if r.get("lr-Adam")]
    assert len(lrs) >= 2 and lrs[0] == pytest.approx(cfg["train"]["lr"])
    assert all(a > b for a, b in zip(lrs, lrs[1:]))  # decays every step
