"""DropBlock (Ghiasi, Lin, Le — *DropBlock: A regularization method for convolutional
networks*, NeurIPS 2018, arXiv 1810.12890).

Training mode, input ``x`` of shape (B, C, H, W), Algorithm 1 of the paper (for
(B, C, D, H, W) the same with cubes, every formula taken over the three dims):

1. ``bs = min(block_size, H, W)`` (the block size is clipped to the feature size);
2. seed rate ``γ = p / bs² · (H·W) / ((H − bs + 1)(W − bs + 1))`` (the paper's
   eq. 1 with ``1 − keep_prob = p``, written for rectangular maps);
3. seeds ``M ~ Bernoulli(γ)`` i.i.d. over the ``(H − bs + 1) × (W − bs + 1)`` positions
   whose block lies fully inside the map (the paper's "green region"), drawn
   independently for every (sample, channel) feature map;
4. every seed is grown to a ``bs × bs`` block of zeros (a max-pool of the seed map;
   the seed is the block's top-left corner, i.e. the block covers the positions
   ``[i, i + bs) × [j, j + bs)``);
5. ``y = x · keep · numel(keep) / count_ones(keep)`` — the kept units are rescaled
   by the ratio of all units to kept units over the whole tensor (the paper's
   normalisation), so the mean activation is preserved; if every unit is dropped
   the scale is ``numel`` (the output is all zero either way).

Defaults: ``p = 0.1`` (the fair-comparison drop rate of the catalogue), ``block_size
= 5``. Blocks overlap, so the realised drop fraction is slightly below ``p``: a
unit covered by ``n`` possible blocks is dropped with probability ``1 − (1 − γ)^n``
(≈ 0.123 instead of 0.1 per interior unit … 0.0052 at a corner for 32×32 maps);
the map average differs from ``p`` by at most the pairwise overlap term
``γ²·Σ n(n−1)/2 / (H·W)``. Evaluation mode: identity.

Implementation: seeds are drawn with one ``bernoulli_`` into a zero-padded boolean
buffer, the max-pool is done as ``2·(bs − 1)`` shifted boolean ORs (a separable
dilation — several times faster on CPU than ``max_pool2d``), and the rescaled keep
mask is built once in the input's dtype; the backward is one multiply by the same
mask. The scale is computed on the device (no host synchronisation).
"""

from __future__ import annotations

import math

import torch

from ..checks import check_int, check_real
from .base import Regularizer
from .registry import register


def seed_rate(p: float, block_size: int, *sizes: int) -> float:
    """``γ`` of the paper for a map of ``sizes`` (H, W) or (D, H, W), ``block_size``
    already clipped: ``p / bs^d · Π size / Π (size − bs + 1)``."""
    valid = math.prod(s - block_size + 1 for s in sizes)
    return p / block_size ** len(sizes) * math.prod(sizes) / valid


def block_mask(shape: tuple[int, ...], gamma: float, block_size: int,
               device: torch.device | str | None = None, spatial_dims: int = 2) -> torch.Tensor:
    """Boolean drop mask of ``shape`` (…, H, W) — or (…, D, H, W) with ``spatial_dims=3``:
    Bernoulli(``gamma``) seeds over the valid positions, each grown to a ``block_size``
    square (cube) of True (= dropped)."""
    lead, sizes = shape[:-spatial_dims], shape[-spatial_dims:]
    bs = block_size
    seeds = torch.zeros((*lead, *(s + bs - 1 for s in sizes)), dtype=torch.bool, device=device)
    # valid seed positions (block fully inside) sit at padded index [bs-1, size) in every
    # dim; output unit y is dropped if a seed lies in [y-bs+1, y] along every dim
    seeds[(..., *(slice(bs - 1, s) for s in sizes))].bernoulli_(gamma)
    out = seeds
    for dim in range(-1, -spatial_dims - 1, -1):  # separable dilation: last dim first
        size = sizes[dim]
        grown = out.narrow(dim, 0, size).clone()
        for k in range(1, bs):
            grown |= out.narrow(dim, k, size)
        out = grown
    return out


@register("dropblock")
class DropBlock(Regularizer):
    """DropBlock (Ghiasi et al., NeurIPS 2018): drop contiguous ``block_size²`` regions
    of every feature map and rescale by ``numel / kept``.

    Args:
        p: target fraction of dropped units (``1 − keep_prob``), in [0, 1). Default 0.1.
        block_size: side of the square blocks, integer ≥ 1 (clipped to the feature
            size at run time). Default 5.

    Shapes: (B, C, H, W) → same; (B, C, D, H, W) → same with ``block_size³`` cubes (the
    natural 3D extension: seeds over the valid D×H×W positions, ``γ = p / bs³ · DHW /
    Π(size − bs + 1)``). Evaluation mode: identity.
    """

    def __init__(self, p: float = 0.1, block_size: int = 5):
        super().__init__()
        self.p = check_real("p", p, 0.0, 1.0, high_open=True)
        self.block_size = check_int("block_size", block_size, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.dim() not in (4, 5):
            raise ValueError("dropblock expects (B, C, H, W) or (B, C, D, H, W) input, "
                             f"got shape {tuple(x.shape)}")
        sizes = x.shape[2:]
        bs = min(self.block_size, *sizes)
        gamma = seed_rate(self.p, bs, *sizes)
        with torch.no_grad():
            dropped = block_mask(tuple(x.shape), gamma, bs, device=x.device, spatial_dims=len(sizes))
            kept = dropped.numel() - dropped.sum()
            scale = dropped.numel() / kept.clamp_min(1).to(torch.float32)
            keep = (~dropped).to(x.dtype).mul_(scale)
        return x * keep

    def extra_repr(self) -> str:
        return f"p={self.p:g}, block_size={self.block_size}"
