"""Building blocks shared by every architecture: the conv block with its regularizer slot.

All three networks (U-Net, Attention U-Net, UNet3+) are built from :class:`ConvBlock`
— conv–norm–activation twice (Ronneberger et al., *U-Net: Convolutional Networks for
Biomedical Image Segmentation*, MICCAI 2015) — with **one regularizer slot between the
two convs**, so a comparison of regularizers changes exactly one thing. The slot
follows the placement protocol of :mod:`medseg.regularizers.base`:

* ``placement == "slot"``     → ``conv2(reg(conv1(x)))``;
* ``placement == "residual"`` → ``reg(h, conv2)`` with ``h = conv1(x)`` (Stochastic
  Depth turns the second conv into a residual branch, ``h + b·conv2(h)``);
* ``placement == "input"``    → the slot holds an identity module; the network applies
  its ``input_regularizer`` to the image instead.

:class:`FusionConv` is the single-conv variant used by the UNet3+ decoder (one fusion
conv–norm–activation per stage, Huang et al., ICASSP 2020): there the slot *follows*
the activation, ``reg(conv(x))``; with a residual regularizer the fusion conv becomes
the residual branch, ``reg(x, conv)`` (its input and output widths are equal).

The conv–norm–activation unit is MONAI's :class:`~monai.networks.blocks.Convolution`
(3×3, padding 1, no bias because a norm follows, in-place ReLU).

A slot module that declares ``fuses_relu`` (Heuristic Dropout) takes over the ReLU
in front of it: the unit before the slot is then conv–norm only and the module
computes ``reg(relu(·))`` itself — the same function, with one full-size activation
tensor and two copies fewer per block (``medseg bench --section unet_step``).
"""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution
from torch import nn

from ..errors import ConfigError
from ..regularizers import Regularizer

#: normalisations accepted by ``norm=`` (MONAI norm factory spec for each)
NORMS = {
    "batch": "batch",
    # affine instance norm, as in nnU-Net (MONAI's default is affine=False)
    "instance": ("instance", {"affine": True}),
}

def norm_spec(norm: str):
    """MONAI factory spec for ``norm`` ("batch" | "instance"); ConfigError otherwise."""
    if norm not in NORMS:
        raise ConfigError(f"model norm '{norm}' is unknown (known: {', '.join(NORMS)})")
    return NORMS[norm]


def conv_norm_act(in_channels: int, out_channels: int, norm: str = "batch",
                  kernel_size: int = 3, act: bool = True) -> Convolution:
    """A ``kernel_size`` conv (stride 1, 'same' padding, no bias) → norm → ReLU(inplace)
    (``act=False``: without the ReLU)."""
    return Convolution(
        spatial_dims=2, in_channels=in_channels, out_channels=out_channels,
        kernel_size=kernel_size, act=("relu", {"inplace": True}) if act else None,
        norm=norm_spec(norm), bias=False, padding=kernel_size // 2,
    )


def _placement(reg: nn.Module) -> str:
    return getattr(reg, "placement", "slot")


def _fuse_relu_into(reg: nn.Module) -> bool:
    """Hand the ReLU before the slot to ``reg`` if it takes it (``fuses_relu``; see
    :meth:`medseg.regularizers.heuristic.HeuristicDropout.fuse_relu`): calls
    ``reg.fuse_relu()`` and returns True, so the block builds the unit before the slot
    without its ReLU. The values are those of ReLU then regularizer; only memory and
    copies are saved."""
    if _placement(reg) == "slot" and getattr(reg, "fuses_relu", False):
        reg.fuse_relu()
        return True
    return False


class ConvBlock(nn.Module):
    """conv–norm–ReLU, regularizer slot, conv–norm–ReLU (one encoder or decoder stage).

    Args:
        in_channels: channels of the block input.
        out_channels: channels after each of the two convs.
        reg: the slot module (a :class:`~medseg.regularizers.Regularizer`); ``None`` →
            an identity regularizer. Its ``placement`` decides the wiring (see module doc).
        norm: ``"batch"`` (default) or ``"instance"``.

    Shapes: (B, in_channels, H, W) → (B, out_channels, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int, reg: nn.Module | None = None,
                 norm: str = "batch"):
        super().__init__()
        reg = reg if reg is not None else Regularizer()
        self.conv1 = conv_norm_act(in_channels, out_channels, norm, act=not _fuse_relu_into(reg))
        self.reg = reg
        self.conv2 = conv_norm_act(out_channels, out_channels, norm)
        self.residual = _placement(self.reg) == "residual"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(x)
        if self.residual:
            return self.reg(h, self.conv2)
        return self.conv2(self.reg(h))

    def extra_repr(self) -> str:
        return "residual=True" if self.residual else ""


class FusionConv(nn.Module):
    """A single conv–norm–ReLU followed by the regularizer slot (UNet3+ decoder fusion).

    Args:
        in_channels: channels of the concatenated full-scale features.
        out_channels: channels of the fused output.
        reg: the slot module; ``None`` → identity. ``"slot"`` placement →
            ``reg(conv(x))``; ``"residual"`` → ``reg(x, conv)`` (needs
            ``in_channels == out_channels``, true in UNet3+ where both are
            (depth+1)·cat_channels).
        norm: ``"batch"`` (default) or ``"instance"``.
    """

    def __init__(self, in_channels: int, out_channels: int, reg: nn.Module | None = None,
                 norm: str = "batch"):
        super().__init__()
        reg = reg if reg is not None else Regularizer()
        self.conv = conv_norm_act(in_channels, out_channels, norm, act=not _fuse_relu_into(reg))
        self.reg = reg
        self.residual = _placement(self.reg) == "residual"
        if self.residual and in_channels != out_channels:
            raise ValueError(
                f"a residual regularizer needs equal widths, got {in_channels} → {out_channels}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.residual:
            return self.reg(x, self.conv)
        return self.reg(self.conv(x))

    def extra_repr(self) -> str:
        return "residual=True" if self.residual else ""


def check_size(x: torch.Tensor, depth: int, in_channels: int) -> None:
    """Raise ValueError unless ``x`` is (B, in_channels, H, W) with H, W divisible by 2**depth."""
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ValueError(
            f"expected input of shape (B, {in_channels}, H, W), got {tuple(x.shape)}")
    factor = 2 ** depth
    h, w = x.shape[-2:]
    if h % factor or w % factor:
        raise ValueError(
            f"input height and width must be divisible by 2**depth = {factor} "
            f"(depth {depth}), got {h}×{w}")


def widths(base_channels: int, depth: int) -> list[int]:
    """Channel width of each encoder stage: ``base_channels · 2**i`` for i = 0 … depth."""
    return [base_channels * 2 ** i for i in range(depth + 1)]
