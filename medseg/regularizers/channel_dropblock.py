"""Channel DropBlock, CDB (Ding et al., 2021).

*Channel DropBlock: An Improved Regularization Method for Fine-Grained Visual
Classification*, Y. Ding et al., 2021 (BMVC 2021). A Chinese reading note is in
``shared/seeds/001_*.txt``. Channels are pairwise correlated, so dropping single
channels (Spatial Dropout) still lets a visual pattern through; CDB masks out a whole
*group of correlated channels* to break their co-adaptation. The paper's experiments
use the randomly selected group (its attention-guided variant helped less).

Per sample, for a feature map ``X ∈ R^{C×H×W}``, in training mode (paper Alg. 1, §3.2–3.3):

1. **Channel correlation matrix** ``M ∈ R^{C×C}`` by one of two metrics (``metric``):

   * ``"bilinear"`` (default) — bilinear-pooling metric: reshape ``X`` to
     ``R^{C×HW}``, L2-normalise every row (``N(·)``) and take ``M = N(X) N(X)ᵀ``, the
     cosine similarity of the channel maps (a zero channel has cosine 0);
   * ``"max"`` — max-activation metric (after MA-CNN): smooth every channel with a
     3×3 average pool (stride 1, padding 1, border windows averaged over their valid
     pixels), take the (row, column) of its peak, ``P ∈ R^{C×2}``, and rank channels
     by the Euclidean distance of their peaks (closer = more correlated; any
     decreasing function of the distance gives the same groups).

2. **Drop mask** ``M_d ∈ {0,1}^C``: pick a row ``r`` of ``M`` uniformly at random and
   set the top-γ most correlated entries of that row to 0, the others to 1. The
   group size is ``n = γ · C`` rounded *stochastically* per sample
   (``floor(γC) + Bernoulli(frac)``), so exactly a fraction γ of the channels is
   dropped on average at every width (our choice; the paper does not say how
   ``γ·C`` is rounded). Channel ``r`` itself always heads its group; ties (equal
   cosines, coinciding peaks) are broken uniformly at random.
3. ``y = X ⊙ M_d`` (broadcast over H×W), then the kept channels are rescaled by
   ``C / (C − n)`` so the expected activation is preserved (the dropout convention;
   the paper says CDB works in training "with normalization").

Only row ``r`` of ``M`` is needed, so it is computed directly — ``C`` cosines per
sample (one batched matrix–vector product), not the full C×C matrix; the result is
identical. 3D feature maps (B, C, D, H, W): the same, with the maps flattened over D·H·W
(bilinear) or a 3×3×3 average pool and (depth, row, column) peaks (max).
Statistics are float32 under ``no_grad``; the gradient is ``C/(C − n)``
on kept channels and exactly 0 on dropped ones. Evaluation mode: identity.
Defaults: ``gamma=0.1`` (the catalogue's common rate), ``metric="bilinear"``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..checks import check_choice, check_real
from ._sampling import descending_ranks, statistics_mode, stats_dtype, stochastic_round
from .base import Regularizer
from .registry import register

METRICS = ("bilinear", "max")


@register("channel_dropblock")
class ChannelDropBlock(Regularizer):
    """Channel DropBlock: drop a random channel and its most correlated channels together."""

    def __init__(self, gamma: float = 0.1, metric: str = "bilinear"):
        super().__init__()
        self.gamma = check_real("gamma", gamma, 0.0, 1.0, high_open=True)
        self.metric = check_choice("metric", metric, METRICS)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, metric={self.metric!r}"

    @torch.no_grad()
    def row_correlation(self, x: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
        """Correlation of every channel with channel ``row[b]`` of its sample, (B, C);
        larger = more correlated (cosine, or minus the peak distance)."""
        B, C = x.shape[:2]
        dtype = stats_dtype(x.dtype)
        batch = torch.arange(B, device=x.device)
        if self.metric == "bilinear":
            maps = x.flatten(2).to(dtype)  # (B, C, HW); a view for float32 input
            dots = torch.bmm(maps, maps[batch, row][:, :, None])[:, :, 0]  # (B, C)
            norms = maps.norm(dim=2)
            inv = torch.where(norms > 0, 1.0 / norms.clamp_min(torch.finfo(dtype).tiny),
                              torch.zeros_like(norms))
            return dots * inv * inv[batch, row][:, None]
        pool = F.avg_pool2d if x.dim() == 4 else F.avg_pool3d
        smooth = pool(x.to(dtype), kernel_size=3, stride=1, padding=1, count_include_pad=False)
        peak = smooth.flatten(2).argmax(dim=2)  # (B, C)
        pos = torch.stack(torch.unravel_index(peak, x.shape[2:]), dim=2).to(dtype)  # (B, C, d)
        return -(pos - pos[batch, row][:, None, :]).norm(dim=2)

    @torch.no_grad()
    def channel_mask(self, x: torch.Tensor) -> torch.Tensor:
        """The (B, C) multiplier: ``C/(C − n)`` on kept channels, 0 on the dropped group."""
        B, C = x.shape[:2]
        dev = x.device
        with statistics_mode(dev):
            dtype = stats_dtype(x.dtype)
            row = torch.randint(C, (B,), device=dev)
            corr = self.row_correlation(x, row)
            corr[torch.arange(B, device=dev), row] = float("inf")  # r heads its own group
            n_drop = stochastic_round(self.gamma * C, B, dev)  # (B,)
            drop = descending_ranks(corr) < n_drop[:, None]
            kept = (C - n_drop).to(dtype)
            scale = torch.where(kept > 0, C / kept.clamp_min(1.0), torch.zeros_like(kept))
            return (~drop).to(dtype) * scale[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.gamma == 0.0:
            return x
        mask = self.channel_mask(x).to(x.dtype)
        return x * mask.view(*mask.shape, *[1] * (x.dim() - 2))
