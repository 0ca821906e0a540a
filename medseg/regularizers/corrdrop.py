"""Correlation-based structural dropout, CorrDrop (Zeng et al., Pattern Recognition 2021).

*Correlation-based structural dropout for convolutional neural networks*, Y. Zeng
et al., Pattern Recognition, 2021; extends *CorrDrop: Correlation Based Dropout for
Convolutional Neural Networks* (Y. Zeng, T. Dai, S.-T. Xia), ICASSP 2020.
A Chinese reading note is in ``shared/seeds/001_*.txt``. Idea: discriminative regions
(and channels) have highly correlated features; dropping the *less* correlated units
with higher probability regularises without wiping out the discriminative evidence
(DropBlock's "over-dropping") while dropping whole regions (dropout's "under-dropping").

**Feature correlation** (paper eqs. 1–3, feature orthogonality): for a feature matrix
``A = [a_1 … a_N]ᵀ`` (N units, K-dim features), normalise every row,
``P = |Â Âᵀ − I|`` and ``F_i = (1/N) Σ_j P_ij`` — the mean absolute cosine of unit
``i`` with the others (a unit whose feature vector is all zero has cosine 0 with
everything; its ``F`` is 0).

**Mask sampling** (eqs. 4–8), per sample, with mean drop rate ``p``:

* normalise the scores, ``w_i = exp(F_i) / Σ_j exp(F_j)`` (softmax over the units —
  the paper only states that ``F`` is normalised into (0, 1); the softmax is the
  normalisation of a public CorrDrop implementation), and draw a correlation mask
  ``M_i ~ Bernoulli(w_i)``: units with ``M_i = 0`` — probability ``1 − w_i``, larger
  for less-correlated units — are drop *candidates*;
* draw ``B_i ~ Bernoulli(γ)``, ``γ = min(1, p · N / #candidates)`` and drop unit ``i``
  iff it is a candidate and ``B_i = 1``. So ``E[#dropped] = p · N`` whenever
  ``#candidates ≥ p·N`` (i.e. the mean drop rate is ``p``), and a unit is dropped with
  probability proportional to ``1 − w_i``. (γ is computed per sample; that
  implementation uses one γ for the whole batch.) For very few units the weights are large and
  candidates can run out (N = 2: no candidate with probability 1/4), so the rate is
  below ``p`` there; with one unit (N = 1) its weight is 1 and nothing is dropped.
* the kept units are rescaled by ``numel(mask) / sum(mask)`` over the whole batch
  (the DropBlock rule, also used by that implementation).

Note the softmax makes the preference mild when N is large (all ``w_i ≈ 1/N``): the
bias towards dropping less-correlated units is strongest in deep, small stages.

``corrdrop_spatial`` (Spatial-wise CorrDrop, SCD; paper §3.3, Fig. 2): the units are
``k×k`` blocks. ``x`` is average-pooled with kernel = stride = ``block_size`` (k, default
3, ``ceil_mode`` so ``H' = ceil(H/k)``); every pooled position is a unit whose feature is
its C-vector. The pooled keep mask (B, 1, H', W') is nearest-upsampled by k (each
dropped unit becomes a k×k block), cropped to H×W and multiplied into every channel.
On small maps the block is clipped to ``min(H, W) // 2`` (at least 1) so that at
least 2×2 units remain (our adaptation of DropBlock's clipping: with a single pooled
unit there is nothing to correlate and nothing would ever be dropped).
The drop rate ``p`` applies to the pooled units (the paper's adjusted rate): when k
divides H and W the dropped fraction of the feature map equals that of the pooled map;
otherwise the edge blocks are cropped. The N×N correlation is only ever built on the
pooled map, in row chunks to bound memory.

``corrdrop_channel`` (Channel-wise CorrDrop, CCD; §3.4, Fig. 3): the units are the C
channels, their features the H·W maps (``U = reshape(x) ∈ R^{C×HW}``); the C×C
correlation gives ``F ∈ R^C``, a dropped channel is zeroed in full. For non-negative
input (after the block's ReLU) the row sums of the cosine matrix are obtained without
forming it (see :func:`correlation_scores`); no normalised copy of the input is made.

3D feature maps (B, C, D, H, W): the same with k×k×k blocks (``avg_pool3d``, the block
clipped to half the shortest side) and channels flattened over D·H·W.

Both: statistics in float32 under ``no_grad`` (autocast off), torch's global RNG,
vectorised over the batch; the gradient is the rescale factor on kept units and
exactly 0 on dropped ones. Evaluation mode: identity. Defaults: ``p=0.1``
(the catalogue's common rate), ``block_size=3`` (the catalogue default).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..checks import check_int, check_real
from ._sampling import statistics_mode, stats_dtype
from .base import Regularizer
from .registry import register

#: entries of one (B, rows, N) block of the cosine matrix (4 MiB of float32)
_CHUNK_ELEMENTS = 1 << 20


@torch.no_grad()
def correlation_scores(features: torch.Tensor) -> torch.Tensor:
    """``F_i = (1/N) Σ_{j≠i} |cos(a_i, a_j)|`` for ``features`` of shape (B, N, K).

    Equals the row mean of the paper's ``|Â Âᵀ − I|`` for every non-zero unit (a zero
    unit gets 0). Returns (B, N) in the features' dtype. Two exact evaluations:

    * features ≥ 0 (the usual case after a ReLU): every cosine is ≥ 0, so
      ``Σ_{j≠i} |cos_ij| = â_i · (Σ_j â_j) − ‖â_i‖²`` — O(N·K), no N×N matrix;
    * otherwise the (B, N, N) cosine matrix is formed in blocks of rows of at most
      ``_CHUNK_ELEMENTS`` entries (one reused buffer) and ``|·|``-summed (an L1 norm).
    """
    B, N, _ = features.shape
    norms = features.norm(dim=2)  # (B, N)
    inv = torch.where(norms > 0, 1.0 / norms.clamp_min(torch.finfo(norms.dtype).tiny),
                      torch.zeros_like(norms))
    self_dot = (norms > 0).to(features.dtype)  # |cos(a_i, a_i)|: 1, or 0 for a zero unit
    if bool((features >= 0).all()):
        total = torch.bmm(inv[:, None, :], features)  # Σ_j â_j, (B, 1, K)
        row_sums = torch.bmm(features, total.transpose(1, 2))[:, :, 0] * inv  # Σ_j cos_ij
        return (row_sums - self_dot).clamp_min(0.0) / N
    unit = features * inv[:, :, None]
    transposed = unit.transpose(1, 2)
    rows = max(1, min(N, _CHUNK_ELEMENTS // max(1, B * N)))
    buffer = torch.empty(B, rows, N, dtype=features.dtype, device=features.device)
    row_sums = torch.empty(B, N, dtype=features.dtype, device=features.device)
    for start in range(0, N, rows):
        stop = min(N, start + rows)
        if stop - start == rows:
            block = torch.bmm(unit[:, start:stop], transposed, out=buffer)
        else:
            block = torch.bmm(unit[:, start:stop], transposed)
        row_sums[:, start:stop] = torch.linalg.vector_norm(block, ord=1, dim=2)  # Σ|cos|
    return (row_sums - self_dot).clamp_min(0.0) / N


@torch.no_grad()
def sample_drop(scores: torch.Tensor, p: float) -> torch.Tensor:
    """Boolean (B, N) drop mask from correlation scores, mean rate ``p`` (see module doc)."""
    B, N = scores.shape
    weight = torch.softmax(scores, dim=1)
    candidate = torch.rand(B, N, device=scores.device, dtype=scores.dtype) >= weight
    n_cand = candidate.sum(dim=1, keepdim=True).to(scores.dtype)
    gamma = (p * N / n_cand.clamp_min(1.0)).clamp(max=1.0)
    return candidate & (torch.rand(B, N, device=scores.device, dtype=scores.dtype) < gamma)


def _rescaled(keep: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``keep · numel / sum(keep)`` (0 everywhere if nothing is kept)."""
    kept = keep.sum()
    scale = keep.numel() / kept.clamp_min(1).to(dtype)
    return keep.to(dtype) * scale


@register("corrdrop_spatial")
class SpatialCorrDrop(Regularizer):
    """Spatial-wise CorrDrop: drop k×k blocks whose pooled features are less correlated."""

    def __init__(self, p: float = 0.1, block_size: int = 3):
        super().__init__()
        self.p = check_real("p", p, 0.0, 1.0, high_open=True)
        self.block_size = check_int("block_size", block_size, 1)

    def extra_repr(self) -> str:
        return f"p={self.p}, block_size={self.block_size}"

    def effective_block(self, *sizes: int) -> int:
        """``block_size`` clipped to ``min(sizes) // 2`` (at least 1), so the pooled map
        keeps ≥ 2 units along its shortest side (one unit has no correlation to rank)."""
        return max(1, min(self.block_size, min(sizes) // 2))

    @torch.no_grad()
    def keep_mask(self, x: torch.Tensor) -> torch.Tensor:
        """The (B, 1, *spatial) multiplier: rescale factor where kept, 0 where dropped."""
        if x.dim() not in (4, 5):
            raise ValueError("corrdrop_spatial expects (B, C, H, W) or (B, C, D, H, W) input, "
                             f"got shape {tuple(x.shape)}")
        B, sizes = x.shape[0], x.shape[2:]
        k = self.effective_block(*sizes)
        pool = F.avg_pool2d if len(sizes) == 2 else F.avg_pool3d
        with statistics_mode(x.device):
            dtype = stats_dtype(x.dtype)
            pooled = pool(x.to(dtype), kernel_size=k, stride=k, ceil_mode=True)
            units = pooled.flatten(2).transpose(1, 2)  # (B, N, C)
            drop = sample_drop(correlation_scores(units), self.p)  # (B, N)
            keep = (~drop).view(B, 1, *pooled.shape[2:])
            for dim in range(2, keep.dim()) if k > 1 else ():
                keep = keep.repeat_interleave(k, dim=dim)
            keep = keep[(slice(None), slice(None), *(slice(0, s) for s in sizes))]
            return _rescaled(keep, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return x * self.keep_mask(x).to(x.dtype)


@register("corrdrop_channel")
class ChannelCorrDrop(Regularizer):
    """Channel-wise CorrDrop: drop whole channels, less-correlated ones more often."""

    def __init__(self, p: float = 0.1):
        super().__init__()
        self.p = check_real("p", p, 0.0, 1.0, high_open=True)

    def extra_repr(self) -> str:
        return f"p={self.p}"

    @torch.no_grad()
    def keep_mask(self, x: torch.Tensor) -> torch.Tensor:
        """The (B, C, 1, 1) multiplier: rescale factor where kept, 0 where dropped."""
        B, C = x.shape[:2]
        with statistics_mode(x.device):
            dtype = stats_dtype(x.dtype)
            units = x.flatten(2).to(dtype)  # (B, C, H·W); a view for float32 input
            drop = sample_drop(correlation_scores(units), self.p)  # (B, C)
            return _rescaled(~drop, dtype).view(B, C, *[1] * (x.dim() - 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return x * self.keep_mask(x).to(x.dtype)
