"""U-Net (Ronneberger, Fischer & Brox, *U-Net: Convolutional Networks for Biomedical
Image Segmentation*, MICCAI 2015, arXiv 1505.04597).

Encoder: ``depth + 1`` stages of :class:`~medseg.models.blocks.ConvBlock` (two 3×3
conv–norm–ReLU with the regularizer slot between them) separated by 2×2 max-pooling;
the last stage is the bottleneck. Decoder: per level a 2×2 stride-2 transposed conv
("up-convolution", halves the channels), concatenation with the skip, and a
ConvBlock. A 1×1 conv (:attr:`head`) maps the top decoder stage to logits. Unlike
the paper's valid convolutions, convs are padded ('same'), so the output has the
input's size and no cropping is needed; batch (or instance) norm follows each conv.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from .base import SegmentationNet
from .blocks import ConvBlock, widths


class UNet(SegmentationNet):
    """U-Net with one regularizer slot in every stage block.

    Args:
        in_channels: image channels.
        out_channels: classes (logit maps).
        base_channels: width of the first stage (default 16; paper 64); stage i has
            ``base_channels · 2**i`` channels.
        depth: down-sampling steps (default 4, as in the paper); H, W % 2**depth == 0.
        regularizer: ``None`` (default, identity) | ``"name"`` | ``{"name": ..., **params}``.
        norm: ``"batch"`` (default) or ``"instance"``.

    Attributes:
        encoder: ``depth + 1`` ConvBlocks, top → bottleneck.
        up: ``depth`` transposed convs, bottom → top.
        decoder: ``depth`` ConvBlocks, bottom → top.
        head: the final 1×1 ``nn.Conv2d`` producing logits.
        input_regularizer: module applied to the input, or None.
    """

    def __init__(self, in_channels: int, out_channels: int, base_channels: int = 16,
                 depth: int = 4, regularizer: str | Mapping[str, Any] | None = None,
                 norm: str = "batch"):
        super().__init__(in_channels, out_channels, base_channels, depth, regularizer, norm)
        w = widths(self.base_channels, self.depth)
        slots = self._make_slots()
        self.encoder = nn.ModuleList(
            ConvBlock(self.in_channels if i == 0 else w[i - 1], w[i], slots[i], norm)
            for i in range(self.depth + 1)
        )
        self.pool = nn.MaxPool2d(2)
        levels = range(self.depth - 1, -1, -1)  # decoder order: bottom → top
        self.up = nn.ModuleList(nn.ConvTranspose2d(w[i + 1], w[i], 2, stride=2) for i in levels)
        self.decoder = nn.ModuleList(
            ConvBlock(2 * w[i], w[i], slots[self.depth + 1 + k], norm)
            for k, i in enumerate(levels)
        )
        self.head = nn.Conv2d(w[0], self.out_channels, 1)

    def _gate(self, k: int, skip: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Hook for the skip of decoder stage ``k`` given the coarser feature ``h``."""
        return skip

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        h = x
        for i, block in enumerate(self.encoder):
            h = block(self.pool(h) if i else h)
            skips.append(h)
        h = skips.pop()  # bottleneck
        for k, (up, block) in enumerate(zip(self.up, self.decoder)):
            skip = self._gate(k, skips.pop(), h)
            h = block(torch.cat([skip, up(h)], dim=1))
        return self.head(h)
