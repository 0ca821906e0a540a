"""UNet 3+ (Huang et al., *UNet 3+: A Full-Scale Connected UNet for Medical Image
Segmentation*, ICASSP 2020, arXiv 2004.08790).

Encoder: as U-Net — ``depth + 1`` :class:`~medseg.models.blocks.ConvBlock` stages
(E_0 … E_depth, E_depth the bottleneck) separated by 2×2 max-pooling.

Full-scale skip connections: decoder stage D_i (i = depth−1 … 0) fuses

* every encoder stage E_j with j ≤ i, max-pooled by 2**(i−j) to D_i's scale (none for
  j = i), each through a 3×3 conv–norm–ReLU to ``cat_channels``;
* every deeper decoder stage D_j, j > i (the bottleneck E_depth in place of D_depth),
  bilinearly upsampled by 2**(j−i), each through a 3×3 conv–norm–ReLU to ``cat_channels``;

concatenated into ``(depth + 1) · cat_channels`` features (5 × cat_channels at depth 4,
the paper's 5 × 64 = 320) and fused by one 3×3 conv–norm–ReLU
(:class:`~medseg.models.blocks.FusionConv`) whose regularizer slot follows its
activation. :attr:`head` (1×1 conv) maps D_0 to logits.

Deep supervision (``deep_supervision=True``): a 1×1 conv head on every decoder stage
and on the bottleneck, bilinearly upsampled to the input size (the paper uses 3×3
heads; 1×1 here, like the main head). In training mode the forward returns
``[main, aux_D1, …, aux_D(depth−1), aux_bottleneck]``; in eval mode the main logits
only. The paper's classification-guided module is not implemented (optional there).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_bool, check_int
from .base import SegmentationNet, checked
from .blocks import ConvBlock, FusionConv, conv_norm_act, widths


class FullScaleStage(nn.Module):
    """One UNet3+ decoder stage at level ``level``: full-scale branches → concat → fusion.

    Args:
        level: this stage's level i (0 = full resolution).
        depth: the network depth (the bottleneck is at level ``depth``).
        source_channels: channels of the source at each level j = 0 … depth (encoder
            stages for j ≤ i, the bottleneck at j = depth, decoder stages between).
        cat_channels: channels of each branch after its 3×3 conv.
        reg: the fusion conv's regularizer slot.
        norm: ``"batch"`` or ``"instance"``.
    """

    def __init__(self, level: int, depth: int, source_channels: list[int], cat_channels: int,
                 reg: nn.Module, norm: str = "batch"):
        super().__init__()
        self.level = level
        branches = []
        for j, ch in enumerate(source_channels):
            conv = conv_norm_act(ch, cat_channels, norm)
            if j < level:  # shallower encoder stage: max-pool down to this scale
                f = 2 ** (level - j)
                branches.append(nn.Sequential(nn.MaxPool2d(f, f), conv))
            elif j > level:  # deeper decoder stage / bottleneck: bilinear upsample
                up = nn.Upsample(scale_factor=2 ** (j - level), mode="bilinear", align_corners=False)
                branches.append(nn.Sequential(up, conv))
            else:
                branches.append(conv)
        self.branches = nn.ModuleList(branches)
        width = cat_channels * (depth + 1)
        self.fuse = FusionConv(width, width, reg, norm)

    def forward(self, sources: list[torch.Tensor]) -> torch.Tensor:
        return self.fuse(torch.cat([b(s) for b, s in zip(self.branches, sources)], dim=1))


class UNet3Plus(SegmentationNet):
    """UNet 3+ with full-scale skips and optional deep supervision (Huang et al. 2020).

    Args:
        in_channels: image channels.
        out_channels: classes (logit maps).
        base_channels: width of the first encoder stage (default 16; paper 64); encoder
            stage i has ``base_channels · 2**i`` channels.
        depth: down-sampling steps (default 4, as in the paper); H, W % 2**depth == 0.
        regularizer: ``None`` (default, identity) | ``"name"`` | ``{"name": ..., **params}``.
        norm: ``"batch"`` (default) or ``"instance"``.
        cat_channels: channels of each full-scale branch (default None → base_channels,
            the paper's 64 at base 64); every decoder stage has ``(depth+1)·cat_channels``.
        deep_supervision: add 1×1 heads on D_1 … D_(depth−1) and the bottleneck whose
            upsampled logits follow the main ones in training mode (default False).

    Attributes:
        encoder: ``depth + 1`` ConvBlocks, top → bottleneck.
        decoder: ``depth`` :class:`FullScaleStage`, bottom → top (D_(depth−1) … D_0).
        head: the main 1×1 ``nn.Conv2d`` on D_0.
        aux_heads: the deep-supervision heads (D_1 … D_(depth−1), bottleneck), or None.
        input_regularizer: module applied to the input, or None.
    """

    OPTIONS = {"cat_channels": None, "deep_supervision": False}

    def __init__(self, in_channels: int, out_channels: int, base_channels: int = 16,
                 depth: int = 4, regularizer: str | Mapping[str, Any] | None = None,
                 norm: str = "batch", cat_channels: int | None = None,
                 deep_supervision: bool = False):
        super().__init__(in_channels, out_channels, base_channels, depth, regularizer, norm)
        cat = self.base_channels if cat_channels is None else checked(check_int, "cat_channels", cat_channels, 1)
        self.cat_channels = cat
        self.deep_supervision = checked(check_bool, "deep_supervision", deep_supervision)
        w = widths(self.base_channels, self.depth)
        fused = cat * (self.depth + 1)
        slots = self._make_slots()
        self.encoder = nn.ModuleList(
            ConvBlock(self.in_channels if i == 0 else w[i - 1], w[i], slots[i], norm)
            for i in range(self.depth + 1)
        )
        self.pool = nn.MaxPool2d(2)
        levels = range(self.depth - 1, -1, -1)  # bottom → top
        self.decoder = nn.ModuleList(
            FullScaleStage(
                i, self.depth,
                [w[j] if j <= i or j == self.depth else fused for j in range(self.depth + 1)],
                cat, slots[self.depth + 1 + k], norm,
            )
            for k, i in enumerate(levels)
        )
        self.head = nn.Conv2d(fused, self.out_channels, 1)
        self.aux_heads = None
        if deep_supervision:
            self.aux_heads = nn.ModuleList(
                [nn.Conv2d(fused, self.out_channels, 1) for _ in range(1, self.depth)]
                + [nn.Conv2d(w[self.depth], self.out_channels, 1)]
            )

    def _forward(self, x: torch.Tensor):
        enc = []
        h = x
        for i, block in enumerate(self.encoder):
            h = block(self.pool(h) if i else h)
            enc.append(h)
        # dec[j]: the feature at level j feeding shallower stages (bottleneck at depth)
        dec: dict[int, torch.Tensor] = {self.depth: enc[self.depth]}
        for stage in self.decoder:
            i = stage.level
            dec[i] = stage(enc[: i + 1] + [dec[j] for j in range(i + 1, self.depth + 1)])
        main = self.head(dec[0])
        if self.aux_heads is None or not self.training:
            return main
        size = x.shape[-2:]
        aux = [
            F.interpolate(head(dec[j]), size=size, mode="bilinear", align_corners=False)
            for j, head in zip(range(1, self.depth + 1), self.aux_heads)
        ]
        return [main, *aux]

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, cat_channels={self.cat_channels}, "
                f"deep_supervision={self.deep_supervision}")
