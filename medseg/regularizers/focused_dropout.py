"""FocusedDropout (Xie et al., 2021).

*FocusedDropout for Convolutional Neural Network*, Xie et al., arXiv:2103.15425
(2021); journal version in Applied Sciences 12(15):7682 (2022).
A non-random dropout: instead of dropping influential units it keeps the units
most likely to belong to the target and drops all others, in a small share of the
batches only (the paper: "10 % of batches employing FocusedDropout").

For an input ``x`` of shape (B, C, H, W), in training mode:

1. **Participation** — one draw ``u ~ U(0, 1)`` per forward call; the call is a
   FocusedDropout batch only when ``u < participation`` (default 0.1), otherwise
   ``x`` is returned unchanged. Each slot of a model draws independently (the paper
   chooses batches for the whole network; a slot cannot see the others).
2. **Reference channel** per sample ``b``: ``c* = argmax_c mean_{h,w} x[b, c]``
   (the channel with the highest global-average activation, float32).
3. **Threshold** per sample: ``τ_b = ρ_b · max_{h,w} x[b, c*]`` with a random ratio
   ``ρ_b ~ U(low, high)``, ``[low, high] = [0.6, 0.9]`` (the range of the public
   re-implementations of the paper; the formula images were not readable to us).
   Those re-implementations draw ρ per pixel; we draw one ratio per sample, a single
   threshold that cuts one coherent "preferred area" out of the reference channel
   (our choice, documented here).
4. **Mask** shared by all channels of the sample (CNN spatial invariance):
   ``m_b[h, w] = 1 if x[b, c*, h, w] > τ_b else 0``; output ``y[b, c] = x[b, c] ⊙ m_b``
   for every channel ``c``. No rescaling (the kept units pass unchanged, as in the
   re-implementations). If ``max x[b, c*] ≤ 0`` no focus area exists and the sample is unchanged.

So in a participating call a unit is kept iff its position is where the reference
channel exceeds ``τ_b`` (between 60 % and 90 % of its peak); the dropped fraction is
data dependent, the *share of affected batches* is ``participation``. The mask
carries no gradient: the gradient is 1 on kept units and exactly 0 on dropped ones.
3D feature maps (B, C, D, H, W): the same over D·H·W.
The paper also raises the weight decay while using FocusedDropout; that is a
training choice outside this module. Evaluation mode: identity.
Defaults: ``participation=0.1``, ``low=0.6``, ``high=0.9``.
"""

from __future__ import annotations

import torch

from ..checks import check_real
from ._sampling import statistics_mode, stats_dtype
from .base import Regularizer
from .registry import register


@register("focused_dropout")
class FocusedDropout(Regularizer):
    """FocusedDropout: keep where the highest-mean channel is high, drop elsewhere."""

    def __init__(self, participation: float = 0.1, low: float = 0.6, high: float = 0.9):
        super().__init__()
        self.participation = check_real("participation", participation, 0.0, 1.0)
        self.low = check_real("low", low, 0.0, 1.0)
        self.high = check_real("high", high, 0.0, 1.0)
        if self.low > self.high:
            raise ValueError(f"low and high must satisfy 0 <= low <= high <= 1, "
                             f"got low={low!r}, high={high!r}")

    def extra_repr(self) -> str:
        return f"participation={self.participation}, low={self.low}, high={self.high}"

    @torch.no_grad()
    def spatial_mask(self, x: torch.Tensor) -> torch.Tensor:
        """The (B, 1, *spatial) boolean keep mask of a participating call."""
        B = x.shape[0]
        dev = x.device
        with statistics_mode(dev):
            dtype = stats_dtype(x.dtype)
            ref = torch.mean(x.flatten(2), dim=2, dtype=dtype).argmax(dim=1)  # (B,)
            ref_map = x[torch.arange(B, device=dev), ref].to(dtype)  # (B, *spatial)
            peak = ref_map.flatten(1).amax(dim=1)  # (B,)
            ratio = self.low + (self.high - self.low) * torch.rand(B, device=dev, dtype=dtype)
            per_sample = (B,) + (1,) * (x.dim() - 2)
            keep = ref_map > (ratio * peak).view(per_sample)
            keep |= (peak <= 0).view(per_sample)
            return keep[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.participation == 0.0:
            return x
        if self.participation < 1.0 and torch.rand(()).item() >= self.participation:
            return x
        return x * self.spatial_mask(x).to(x.dtype)
