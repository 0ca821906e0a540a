"""Attention U-Net (Oktay et al., *Attention U-Net: Learning Where to Look for the
Pancreas*, MIDL 2018, arXiv 1804.03999).

The U-Net of :mod:`medseg.models.unet` with an additive attention gate on every skip
connection. For the skip ``x`` (level i, C_x channels, H×W) and the gating signal
``g`` — the coarser decoder feature of level i+1 (the bottleneck for the deepest
skip), *before* its up-convolution, H/2×W/2 — the gate computes, as in the paper,

    q = ψᵀ · ReLU(W_xᵀ x + W_gᵀ g + b_g) + b_ψ,   α = σ(q),   x̂ = α ⊙ x

at the gating signal's (coarser) resolution: W_x is a 2×2 stride-2 conv (no bias)
that brings ``x`` down to ``g``'s grid, W_g a 1×1 conv with bias, ψ a 1×1 conv to one
channel; the coefficients α are resampled bilinearly to H×W and multiply every
channel of ``x``. The intermediate width F_int is C_x // 2 (at least 1). The paper's
optional output transform (1×1 conv + norm after gating) and deep supervision are
not used, so the gate changes only the skip and the model stays a U-Net otherwise.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import widths
from .unet import UNet


class AttentionGate(nn.Module):
    """Additive attention gate (Oktay et al. 2018, eq. 1–2) for one skip connection.

    Args:
        skip_channels: channels C_x of the skip ``x``.
        gate_channels: channels C_g of the gating signal ``g`` (half ``x``'s resolution).
        inter_channels: width F_int of the joint space (default ``max(1, skip_channels // 2)``).

    ``forward(x, g)`` → ``α ⊙ x`` with ``α = σ(ψ(ReLU(W_x x + W_g g)))`` upsampled to x.
    """

    def __init__(self, skip_channels: int, gate_channels: int, inter_channels: int | None = None):
        super().__init__()
        inter = inter_channels if inter_channels is not None else max(1, skip_channels // 2)
        self.theta_x = nn.Conv2d(skip_channels, inter, kernel_size=2, stride=2, bias=False)
        self.phi_g = nn.Conv2d(gate_channels, inter, kernel_size=1, bias=True)
        self.psi = nn.Conv2d(inter, 1, kernel_size=1, bias=True)

    def coefficients(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Attention coefficients α ∈ (0, 1), shape (B, 1, H, W) of ``x``."""
        q = F.relu(self.theta_x(x) + self.phi_g(g), inplace=True)
        alpha = torch.sigmoid(self.psi(q))
        return F.interpolate(alpha, size=x.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return x * self.coefficients(x, g)


class AttentionUNet(UNet):
    """U-Net with additive attention gates on the skips (Oktay et al. 2018).

    Args:
        in_channels: image channels.
        out_channels: classes (logit maps).
        base_channels: width of the first stage (default 16); stage i has ``base_channels · 2**i``.
        depth: down-sampling steps (default 4); H, W % 2**depth == 0.
        regularizer: ``None`` (default, identity) | ``"name"`` | ``{"name": ..., **params}``.
        norm: ``"batch"`` (default) or ``"instance"``.

    Attributes (besides those of :class:`~medseg.models.unet.UNet`):
        gates: ``depth`` :class:`AttentionGate` modules, bottom → top, one per skip.
    """

    def __init__(self, in_channels: int, out_channels: int, base_channels: int = 16,
                 depth: int = 4, regularizer: str | Mapping[str, Any] | None = None,
                 norm: str = "batch"):
        super().__init__(in_channels, out_channels, base_channels, depth, regularizer, norm)
        w = widths(self.base_channels, self.depth)
        self.gates = nn.ModuleList(
            AttentionGate(w[i], w[i + 1]) for i in range(self.depth - 1, -1, -1)
        )

    def _gate(self, k: int, skip: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.gates[k](skip, h)
