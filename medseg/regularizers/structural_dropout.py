"""Structural Dropout (Knodt — *Structural Dropout for Model Width Compression*, 2022;
seed 001; reference implementation github.com/JulianKnodt/structural_dropout).

Instead of dropping random units, Structural Dropout prunes *all* channels above a
uniformly drawn index, so the network learns an importance ordering of its
channels (channel 0 most important) and can later be cut to any width. In
training mode, for an input ``x`` of shape (B, C, H, W) and each forward pass
(one draw for the whole mini-batch, as in the paper's implementation):

* with probability ``p`` a cut is made: draw ``c`` uniformly from
  ``{min_channels, …, C − 1}``, keep channels ``0 … c − 1`` and zero channels
  ``c … C − 1``; the kept channels are scaled by ``C / c`` ("normalise the
  expectation": the channel-mean of the activation is unchanged — exactly so for
  channels of equal magnitude);
* with probability ``1 − p`` the full width runs unchanged (the paper's "with some
  probability we run the whole network", which indirectly supervises the narrower
  ones).

``p`` is therefore the probability of cutting a pass, not a per-unit rate: the
expected fraction of zeroed channels is ``p · (C − min_channels + 1) / (2C)``, i.e.
``p/2`` with the default ``min_channels = 1``. Defaults: ``p = 0.1`` (the
catalogue's comparison strength; Knodt used 0.5), ``min_channels = 1`` (Knodt's
``lower_bound``). With ``C <= min_channels`` no cut is possible and the module is
the identity. Evaluation mode: identity (full width).

Implementation: the decision and the cut index are drawn on the input's device
(no host synchronisation, always two draws per training pass) and turned into a
(1, C, 1, 1) factor, so the forward and the backward are one multiply each.
"""

from __future__ import annotations

import torch

from ..checks import check_int, check_real
from .base import Regularizer
from .registry import register


@register("structural_dropout")
class StructuralDropout(Regularizer):
    """Structural Dropout (Knodt 2022): with probability ``p`` zero every channel at or
    above a uniformly drawn cut ``c`` and scale the rest by ``C / c``.

    Args:
        p: probability that a training pass is cut, in [0, 1]. Default 0.1.
        min_channels: the fewest channels a cut keeps (integer ≥ 1). Default 1.

    Shapes: (B, C, H, W) (any (B, C, …)) → same. Evaluation mode: identity.
    """

    def __init__(self, p: float = 0.1, min_channels: int = 1):
        super().__init__()
        self.p = check_real("p", p, 0.0, 1.0)
        self.min_channels = check_int("min_channels", min_channels, 1)

    def channel_factor(self, channels: int, device=None, dtype=torch.float32) -> torch.Tensor:
        """Draw one pass's per-channel factor, shape (channels,): ``C/c`` below the cut,
        0 above it, or all ones when the pass is not cut."""
        cut_now = torch.rand((), device=device) < self.p
        c = torch.randint(self.min_channels, channels, (), device=device)
        idx = torch.arange(channels, device=device)
        cut = (idx < c).to(torch.float32) * (channels / c.to(torch.float32))
        return torch.where(cut_now, cut, torch.ones_like(cut)).to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.dim() < 2:
            raise ValueError(
                f"structural_dropout expects (B, C, ...) input, got shape {tuple(x.shape)}")
        channels = x.shape[1]
        if channels <= self.min_channels:
            return x
        factor = self.channel_factor(channels, device=x.device, dtype=x.dtype)
        return x * factor.view((1, channels) + (1,) * (x.dim() - 2))

    def extra_repr(self) -> str:
        return f"p={self.p:g}, min_channels={self.min_channels}"
