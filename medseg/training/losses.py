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

The Dice term of ``dice_ce`` and ``ce_dice_ssim`` is, by default, computed over
the whole batch and over the foreground class only (``train.dice_batch: true``,
``train.dice_include_background: false``), as nnU-Net computes it. The old per-slice
Dice with the background class (``dice_batch: false, dice_include_background: true``)
stays selectable, but on the many slices (and closed-glottis BAGLS frames) without
foreground it scores an empty prediction perfectly and penalises any foreground
fully, which keeps short runs on the all-background solution (README, "A
comparison that measures the regularizer").

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


def dice_ce_loss(batch: bool = True, include_background: bool = False) -> DiceCELoss:
    """MONAI's DiceCELoss on (B, K, …) logits and a (B, 1, …) label map (weights 1:1).

    ``batch``: one Dice over the whole batch instead of one per slice;
    ``include_background``: whether the background class enters the Dice term.
    """
    return DiceCELoss(to_onehot_y=True, softmax=True, batch=batch, include_background=include_background)


class DiceCE(nn.Module):
    """MONAI DiceCELoss: soft Dice on the softmax vs the one-hot label + cross-entropy."""

    def __init__(self, batch: bool = True, include_background: bool = False):
        super().__init__()
        self.dice_ce = dice_ce_loss(batch, include_background)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.dice_ce(logits.float(), target)


class CrossEntropyDiceSSIM(nn.Module):
    """CE + soft Dice (MONAI DiceCELoss) + (1 − SSIM) of the foreground probability (MONAI SSIMLoss)."""

    def __init__(self, batch: bool = True, include_background: bool = False):
        super().__init__()
        self.dice_ce = dice_ce_loss(batch, include_background)
        self.ssim = SSIMLoss(spatial_dims=2, data_range=1.0, win_size=7)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        # the foreground probability: the sum over the foreground classes (one class: p₁)
        fg = torch.softmax(logits, dim=1)[:, 1:].sum(dim=1, keepdim=True)
        return self.dice_ce(logits, target) + self.ssim(fg, (target > 0).float())


def build_loss(name: str, dataset: str, *, dice_batch: bool = True,
               dice_include_background: bool = False) -> nn.Module:
    """The loss ``train.loss`` names (``auto``: the paper's loss of ``dataset``)."""
    if name == "auto":  # nnunet: nnU-Net's Dice + CE
        name = {"pancreas": "ce", "bagls": "ce_dice_ssim"}.get(dataset, "dice_ce")
    if name == "ce":
        return CrossEntropy()
    dice = {"batch": dice_batch, "include_background": dice_include_background}
    if name == "dice_ce":
        return DiceCE(**dice)
    return CrossEntropyDiceSSIM(**dice)


def supervised_loss(loss: nn.Module, output, target: torch.Tensor) -> torch.Tensor:
    """Apply ``loss`` to one output or the mean over deep-supervision outputs."""
    if isinstance(output, (list, tuple)):
        return torch.stack([loss(o, target) for o in output]).mean()
    return loss(output, target)
