"""Sub-batch drop, SBDrop (Sun, PhD thesis, Shanghai Jiao Tong University, 2021, ch. 2).

Source: R. Sun (孙若琪), *基于模型泛化的图像处理技术研究* (image processing techniques
based on model generalisation), PhD thesis, SJTU 2021, chapter 2 "基于子批移除算法的
图像处理技术", Algorithm 2-1; read through the Chinese note ``shared/seeds/000_*.txt``.
Motivation: Dropout before Batch Normalization causes a *variance shift* between
training and test; SBDrop drops along the mini-batch dimension and refills the
dropped activations with the recalibrated mean of the kept ones, so the following
BN sees consistent statistics, and corrects the test-time variance by a fixed factor.

Algorithm 2-1 with drop ratio ``γ`` and shift factor ``k = sqrt(1 − γ)``, for an
activation ``A = x`` of shape (B, C, H, W):

* **training** — a mask over the mini-batch dimension, ``m_b ~ Bernoulli(1 − γ)``
  per sample ``b`` (``m_b = 0``: sample ``b`` is dropped). The recalibrated mean is
  the per-channel mean of the *kept* activations,
  ``μ_c = Σ_{b: m_b=1} Σ_{h,w} x[b, c, h, w] / (K · H · W)``, ``K = Σ_b m_b``
  (float32). Output ``y[b] = x[b]`` if ``m_b = 1``, else ``y[b, c, h, w] = μ_c``.
  Hence the per-channel batch mean of ``y`` equals the mean of the kept sub-batch
  (an unbiased estimate of the full batch mean) while the dropped samples add no
  spread: the batch variance shrinks by about ``1 − γ``.
* **test** — ``y = k · x = sqrt(1 − γ) · x``: SBDrop's *own* evaluation rule, the
  variance ``(1 − γ)·Var`` then matches training. This is the one exception (with
  Stochastic Depth) to the catalogue's "identity in eval" contract; ``γ = 0`` is
  the identity in both modes.

Choices where the note is not explicit (documented, not guessed silently):

* the drop ratio ``γ`` is the probability of *dropping* a sample (the note's wording
  once inverts it, but its shift factor ``sqrt(1 − γ)`` and "丢弃比率" fix the meaning);
* the mask unit is a whole sample ("mini-batch dimension", i.e. a sub-batch is
  dropped) and the refill value is one scalar per channel (the BN statistic);
* if every sample of the batch is dropped (probability ``γ^B``; always for B = 1
  when a drop is drawn) there is nothing to recalibrate from and ``x`` is returned
  unchanged.

The expected fraction of dropped samples is ``γ − γ^B`` (≈ γ). Gradients: the mask
carries none; ``μ`` is differentiable in the kept activations (as a BN mean is), so
the gradient is exactly 0 at every dropped sample. Default ``gamma=0.1``.
3D feature maps (B, C, D, H, W): the same, means over D·H·W.
"""

from __future__ import annotations

import math
import torch

from ..checks import check_real
from ._sampling import stats_dtype
from .base import Regularizer
from .registry import register


@register("sbdrop")
class SubBatchDrop(Regularizer):
    """SBDrop: drop whole samples, refill with the kept samples' channel means;
    evaluation multiplies by ``sqrt(1 − gamma)``."""

    def __init__(self, gamma: float = 0.1):
        super().__init__()
        self.gamma = check_real("gamma", gamma, 0.0, 1.0, high_open=True)

    @property
    def test_scale(self) -> float:
        """The evaluation-mode factor ``k = sqrt(1 − gamma)``."""
        return math.sqrt(1.0 - self.gamma)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, test_scale={self.test_scale:.4g}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gamma == 0.0:
            return x
        if not self.training:
            return x * self.test_scale
        B = x.shape[0]
        dev = x.device
        keep = torch.rand(B, device=dev) >= self.gamma  # (B,)
        kept = keep.sum()
        keep = keep | (kept == 0)  # nobody kept: nothing to refill from, keep everyone
        weight = keep.to(stats_dtype(x.dtype))
        with torch.autocast(device_type=dev.type, enabled=False):
            sample_means = torch.mean(x.flatten(2), dim=2, dtype=weight.dtype)  # (B, C)
            mu = (sample_means * weight[:, None]).sum(dim=0) / weight.sum()  # (C,)
        ones = (1,) * (x.dim() - 2)
        refill = mu.to(x.dtype).view(1, -1, *ones)
        return torch.where(keep.view(-1, 1, *ones), x, refill)
