"""Losses per dataset, as the protocol prescribes (Shi et al., ICASSP 2022).

* Pancreas-CT: cross-entropy (``ce``).
* ``dice_ce`` (not in the paper): MONAI's DiceCELoss, soft Dice + CE 1:1. The
  CPU-scale Pancreas-CT configs use it: with plain CE a network trained for only a
  few hundred steps stays on the all-background solution for a target covering
  0.2 % of the pixels; the Dice term gives the small class weight from the start.
* BAGLS: cross-entropy + Dice + SSIM (``ce_dice_ssim``): MONAI's
  :class:`~monai.losses.DiceCELoss` (softmax Dice on the one-hot target + CE,
  weights 1:1) plus MONAI's :class:`~monai.losses.SSIMLoss` (1 − SSIM, 2D,
  window 7) between the foreground probability and the mask.

UNet3+ with deep supervision returns a list of logits; every head gets the same
loss and the mean is taken (Huang et al. 2020 supervise every decoder stage).
"""

from __future__ import annotations

import torch
from monai.losses import DiceCELoss, SSIMLoss
from torch import nn


class CrossEntropy(nn.Module):
    """Pixel-wise cross-entropy on (B, K, H, W) logits and a (B, 1, H, W) label map."""

    def __init__(self):
        super().__init__()
        self.ce = nn.CrossEntropyLoss()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.ce(logits.float(), target[:, 0].long())


class DiceCE(nn.Module):
    """MONAI DiceCELoss: soft Dice on the softmax vs the one-hot label + cross-entropy."""

    def __init__(self):
        super().__init__()
        self.dice_ce = DiceCELoss(to_onehot_y=True, softmax=True)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.dice_ce(logits.float(), target)


class CrossEntropyDiceSSIM(nn.Module):
    """CE + soft Dice (MONAI DiceCELoss) + (1 − SSIM) of the foreground probability (MONAI SSIMLoss)."""

    def __init__(self):
        super().__init__()
        self.dice_ce = DiceCELoss(to_onehot_y=True, softmax=True)
        self.ssim = SSIMLoss(spatial_dims=2, data_range=1.0, win_size=7)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        fg = torch.softmax(logits, dim=1)[:, 1:2]
        return self.dice_ce(logits, target) + self.ssim(fg, target.float())


def build_loss(name: str, dataset: str) -> nn.Module:
    if name == "auto":
        name = "ce" if dataset == "pancreas" else "ce_dice_ssim"
    if name == "ce":
        return CrossEntropy()
    if name == "dice_ce":
        return DiceCE()
    return CrossEntropyDiceSSIM()


def supervised_loss(loss: nn.Module, output, target: torch.Tensor) -> torch.Tensor:
    """Apply ``loss`` to one output or the mean over deep-supervision outputs."""
    if isinstance(output, (list, tuple)):
        return torch.stack([loss(o, target) for o in output]).mean()
    return loss(output, target)
