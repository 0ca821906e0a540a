"""Weighted Channel Dropout (Hou & Wang, AAAI 2019).

*Weighted Channel Dropout for Regularization of Deep Convolutional Neural Network*,
S. Hou and Z. Wang, AAAI 2019, pp. 8425–8432 (doi:10.1609/aaai.v33i01.33018425).
WCD has two steps (rating channels, selecting channels) and three modules: global
average pooling (GAP), weighted random selection (WRS) and a random number
generator (RNG). It only acts in training; the network is unchanged at test time. 3D feature maps
(B, C, D, H, W): the same, GAP over D·H·W.

Per sample ``b`` of an input ``x`` of shape (B, C, H, W), in training mode:

1. **Rating** — ``s[b, c] = mean_{h,w} x[b, c, h, w]`` (GAP, float32). After the
   block's ReLU the scores are ≥ 0; a score ≤ 0 is treated as the smallest positive
   score (such a channel is kept only once every positive channel is, and in random
   order among its peers).
2. **Weighted random selection** without replacement (Efraimidis–Spirakis): each
   channel gets the key ``k_c = r_c^(1/s_c)``, ``r_c ~ U(0, 1)``, and the ``M``
   channels with the largest keys are *kept*, the other ``C − M`` are zeroed. Higher
   rated channels are therefore kept with higher probability (with ``M = 1`` channel
   ``c`` is kept with probability ``s_c / Σ s``). Implemented with the equivalent key
   ``e_c / s_c``, ``e_c = −ln r_c ~ Exp(1)`` (smallest kept), which avoids the
   underflow of ``r^(1/s)`` for small scores.
   ``M = keep_ratio · C`` rounded *stochastically* per sample
   (``floor(keep_ratio·C) + Bernoulli(frac)``), so the expected kept fraction is
   exactly ``keep_ratio`` for every width (a fixed ``round`` would drop 2/16 = 12.5 %
   of a 16-channel stage instead of 10 %). This rounding is our choice; the paper
   states ``M = wrs_ratio × N`` for its (large) channel counts.
3. **Random number generator** — per sample a draw ``u ~ U(0, 1)``; the WRS mask is
   applied only when ``u < apply_prob`` (the paper's ``q``), otherwise the sample
   passes unchanged. This is how we read the paper's RNG step ("with some
   probability the selection is applied"); ``apply_prob=1`` (default) always applies
   it, which keeps the catalogue's common drop rate of 0.1.
4. **Rescaling** of the kept channels, per sample (``rescale``):

   * ``"score"`` (default): ``α = Σ_c s⁺_c / Σ_{c kept} s⁺_c`` with ``s⁺ = max(s, 0)``
     — the total GAP activation of the sample is preserved exactly (the rescale of
     a public WCD re-implementation; the paper's text we could read only says the kept
     channels are rescaled). If the kept channels carry no positive score, ``α = C / M``.
   * ``"count"``: ``α = C / M`` (the Spatial-Dropout rule ``1/keep_ratio``).

Expected fraction of dropped channels per sample: ``(1 − keep_ratio) · apply_prob``
(exactly, over the stochastic rounding and the RNG). The masks carry no gradient:
the gradient is ``α`` on kept channels and exactly 0 on dropped ones. Evaluation
mode: identity. Defaults: ``keep_ratio=0.9`` (drop rate 0.1, the catalogue's common
strength), ``apply_prob=1.0``, ``rescale="score"``.
"""

from __future__ import annotations

import torch

from ..checks import check_choice, check_real
from ._sampling import descending_ranks, statistics_mode, stats_dtype, stochastic_round
from .base import Regularizer
from .registry import register

RESCALES = ("score", "count")
#: scores below this are treated as this (keeps the key e/s finite in float32)
_MIN_SCORE = 1e-30


@register("wcd")
class WeightedChannelDropout(Regularizer):
    """Weighted Channel Dropout: keep channels by GAP-weighted random selection, rescale."""

    def __init__(self, keep_ratio: float = 0.9, apply_prob: float = 1.0, rescale: str = "score"):
        super().__init__()
        self.keep_ratio = check_real("keep_ratio", keep_ratio, 0.0, 1.0, low_open=True)
        self.apply_prob = check_real("apply_prob", apply_prob, 0.0, 1.0)
        self.rescale = check_choice("rescale", rescale, RESCALES)

    def extra_repr(self) -> str:
        return f"keep_ratio={self.keep_ratio}, apply_prob={self.apply_prob}, rescale={self.rescale!r}"

    @torch.no_grad()
    def channel_mask(self, x: torch.Tensor) -> torch.Tensor:
        """The (B, C) multiplier: ``α`` on kept channels, 0 on dropped (float32/64)."""
        B, C = x.shape[:2]
        dev = x.device
        with statistics_mode(dev):
            score = torch.mean(x.flatten(2), dim=2, dtype=stats_dtype(x.dtype))  # (B, C)
            key = torch.empty_like(score).exponential_() / score.clamp_min(_MIN_SCORE)
            kept_count = stochastic_round(self.keep_ratio * C, B, dev)  # (B,)
            keep = descending_ranks(-key, random_ties=False) < kept_count[:, None]
            if self.apply_prob < 1.0:
                skip = torch.rand(B, device=dev) >= self.apply_prob
                keep |= skip[:, None]
                kept_count = torch.where(skip, torch.full_like(kept_count, C), kept_count)
            by_count = torch.where(kept_count > 0, C / kept_count.clamp_min(1).to(score.dtype),
                                   torch.zeros((), dtype=score.dtype, device=dev))
            if self.rescale == "score":
                pos = score.clamp_min(0.0)
                kept_sum = (pos * keep).sum(dim=1)
                alpha = torch.where(kept_sum > 0, pos.sum(dim=1) / kept_sum.clamp_min(1e-30),
                                    by_count)
            else:
                alpha = by_count
            return keep.to(score.dtype) * alpha[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.keep_ratio >= 1.0 or self.apply_prob == 0.0:
            return x
        mask = self.channel_mask(x).to(x.dtype)
        return x * mask.view(*mask.shape, *[1] * (x.dim() - 2))
