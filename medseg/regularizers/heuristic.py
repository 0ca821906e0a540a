"""Heuristic Dropout (Shi, Liu, Tao, Yuan — ICASSP 2022).

*Heuristic Dropout: An Efficient Regularization Method for Medical Image
Segmentation Models*, Tsinghua University, ICASSP 2022. Normative description:
``shared/spec/heuristic-dropout.md``.

Per sample ``b`` and channel ``c`` of an input ``x`` of shape (B, C, H, W):

* ``v[b, c]`` — unbiased variance of ``x[b, c]`` over the H×W pixels (as ``torch.var``);
* ``q = round(tanh(x) · bins)`` — the quantised activation, levels ``−bins … bins``
  (``2·bins + 1`` levels; after a ReLU only ``0 … bins`` occur);
* ``p[b, c, l] = #{pixels of (b, c) at level l} / (H·W)`` and
  ``e[b, c] = −Σ_l p·ln p`` (natural log, ``0·ln 0 = 0``);
* score ``s[b, c] = e[b, c] + k / (v[b, c] + eps)``.

For every sample the ``n = round(rate · C)`` channels with the largest score are
dropped (independently per sample; ties go to the lower channel index). A dropped
channel is replaced by its 3×3 Laplace-filtered version — kernel
``[[-1,-1,-1],[-1,8,-1],[-1,-1,-1]]``, zero padding 1, stride 1 — or by zeros with
``mask="zero"`` (the paper's ablation). Kept channels pass through unchanged; there
is no rescaling. The selection carries no gradient; the gradient of a dropped
plane is the adjoint of the Laplace filter (a transposed convolution with the same
kernel), that of a kept plane the identity. Evaluation mode: identity. The method
is deterministic: the same input gives the same output.

Defaults follow the paper: ``rate=0.1``, ``k=2.0`` (the most stable value of the
paper's k-ablation; k=3 had the best mean), ``bins=10``, ``mask="laplace"``,
``eps=1e-7``. ``n = round(rate·C)`` uses Python's ``round`` (halves to even, as
``torch.round``). With a single pixel per channel (H·W = 1) the unbiased variance
is undefined; it is taken as 0 there (every channel then scores ``k / eps``).

Implementation (one eager path, no compilation): the statistics are computed in
float32 (float64 for float64 input) under ``no_grad``, over chunks of channel
planes so the temporaries stay small and cache-resident. Per chunk: the variance
by the two-pass formula ``Σ(x − mean)² / (H·W − 1)`` (the value of ``torch.var``,
several times faster on CPU); the level index ``q + bins`` in place on one float
buffer; one conversion to integers and a single integer ``scatter_add_`` of ones
into the (plane, level) counts — no one-hot tensor is ever built.

The level index uses the identity ``tanh(x) = 2·sigmoid(2x) − 1``, i.e.
``round(tanh(x)·bins) + bins = round(2·bins·sigmoid(2x))`` (``bins`` is an
integer): the same quantity, but ``sigmoid`` is about ten times cheaper than
``tanh`` on CPU and the quantisation is most of the method's cost. In float32
both forms carry a rounding error of ~1e-7 per unit, so they can put a value in
different neighbouring levels only when ``tanh(x)·bins`` lies within ~1e-6 of a
level boundary ``j + ½`` — exactly where any float32 evaluation of the formula
(``torch.tanh`` included) is ambiguous. The mask is applied by a custom
autograd function that copies the input once and runs the 3×3 filter only on the
``n·B`` selected planes; its backward is again one copy of the incoming gradient
plus the adjoint filter (the kernel is symmetric: the same filter) on those planes.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import torch
import torch.nn.functional as F

from .base import Regularizer
from .registry import register

#: the 3×3 Laplace drop mask of the paper
LAPLACE_KERNEL = ((-1.0, -1.0, -1.0), (-1.0, 8.0, -1.0), (-1.0, -1.0, -1.0))
MASKS = ("laplace", "zero")
#: elements per statistics chunk: a 4 MiB float32 buffer plus its 8 MiB int64 level
#: index stay in cache, and few enough chunks keep the number of parallel regions
#: (each a thread barrier, costly on a contended CPU) small
_CHUNK_ELEMENTS = 1 << 20


def _stats_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


@torch.no_grad()
def channel_statistics(x: torch.Tensor, bins: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(entropy, variance)``, each of shape (B, C), of ``x`` (B, C, H, W).

    ``entropy`` is the natural-log Shannon entropy of the histogram of
    ``round(tanh(x)·bins)`` over the ``2·bins+1`` levels (float64); ``variance``
    the unbiased per-plane variance (float32, float64 for float64 input; 0 when
    H·W = 1). Computed in chunks of planes without materialising a one-hot tensor.
    """
    if x.dim() != 4:
        raise ValueError(f"expected a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    B, C, H, W = x.shape
    hw = H * W
    levels = 2 * bins + 1
    planes = x.reshape(B * C, hw)
    sdtype = _stats_dtype(x.dtype)
    n_planes = B * C
    per_chunk = max(1, _CHUNK_ELEMENTS // max(hw, 1))
    counts = torch.zeros(n_planes, levels, dtype=torch.int32, device=x.device)
    variance = torch.zeros(n_planes, dtype=sdtype, device=x.device)
    buf = torch.empty(min(per_chunk, n_planes), hw, dtype=sdtype, device=x.device)
    ones = torch.ones((), dtype=torch.int32, device=x.device).expand(buf.shape)
    for start in range(0, n_planes, per_chunk):
        xs = planes[start:start + per_chunk]
        p = xs.shape[0]
        q = buf[:p]
        if xs.dtype != sdtype:
            xs = xs.to(sdtype)
        if hw > 1:
            # two-pass unbiased variance on the cache-resident chunk
            torch.sub(xs, xs.mean(dim=1, keepdim=True), out=q)
            variance[start:start + p] = q.square_().sum(dim=1).div_(hw - 1)
        # level index round(tanh(x)·bins) + bins = round(2·bins·sigmoid(2x)) in 0 … 2·bins
        torch.mul(xs, 2, out=q)
        q.sigmoid_().mul_(2 * bins).round_()
        if not bool(torch.isfinite(variance[start:start + p]).all()):
            q.nan_to_num_(nan=0.0)  # keep the level index valid; such planes are NaN anyway
        level = q.to(torch.int64)
        counts[start:start + p].scatter_add_(1, level, ones[:p])
    prob = counts.to(torch.float64).div_(hw)
    entropy = -torch.special.xlogy(prob, prob).sum(dim=1)
    return entropy.view(B, C), variance.view(B, C)


@torch.no_grad()
def select_channels(score: torch.Tensor, n: int) -> torch.Tensor:
    """Indices (B, n) of the ``n`` largest scores per row; ties go to the lower index."""
    order = torch.sort(score, dim=1, descending=True, stable=True).indices
    return order[:, :n]


def laplace_planes(planes: torch.Tensor) -> torch.Tensor:
    """3×3 Laplace filter ``[[-1,-1,-1],[-1,8,-1],[-1,-1,-1]]`` (zero padding 1) of
    planes (N, H, W), computed in float32 (float64 for float64) and cast back.

    Written as ``9·x − box3×3(x)`` with the box sum done separably on the padded
    planes: a 1→1 ``conv2d`` is far slower on CPU. The kernel is symmetric, so this
    is also its own adjoint (the transposed convolution), used in the backward.
    """
    sdtype = _stats_dtype(planes.dtype)
    inp = planes.to(sdtype)
    padded = F.pad(inp, (1, 1, 1, 1))
    rows = padded[:, :, :-2] + padded[:, :, 1:-1]
    rows += padded[:, :, 2:]
    box = rows[:, :-2] + rows[:, 1:-1]
    box += rows[:, 2:]
    return torch.mul(inp, 9).sub_(box).to(planes.dtype)


class _ReplacePlanes(torch.autograd.Function):
    """``out = x`` except the planes ``index`` of x viewed as (B·C, H, W), which become
    ``Laplace(x[plane])`` (or zero). Backward: identity except those planes, which
    get the adjoint filter (or zero)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, index: torch.Tensor, laplace: bool) -> torch.Tensor:
        B, C, H, W = x.shape
        ctx.index, ctx.laplace = index, laplace
        out = x.clone(memory_format=torch.contiguous_format)
        flat = out.view(B * C, H, W)
        if laplace:
            flat.index_copy_(0, index, laplace_planes(flat.index_select(0, index)))
        else:
            flat.index_fill_(0, index, 0)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        B, C, H, W = grad.shape
        index = ctx.index
        grad_in = grad.clone(memory_format=torch.contiguous_format)
        flat = grad_in.view(B * C, H, W)
        if ctx.laplace:
            flat.index_copy_(0, index, laplace_planes(flat.index_select(0, index)))
        else:
            flat.index_fill_(0, index, 0)
        return grad_in, None, None


@register("heuristic")
class HeuristicDropout(Regularizer):
    """Heuristic Dropout (Shi et al., ICASSP 2022): per sample, replace the
    ``round(rate·C)`` channels with the highest ``entropy + k/(var+eps)`` by their
    3×3 Laplace-filtered version (``mask="zero"``: by zeros).

    Args:
        rate: fraction of channels dropped per sample, in [0, 1) (default 0.1).
        k: weight of the inverse-variance heuristic, ≥ 0 (default 2.0).
        bins: quantisation ``round(tanh(x)·bins)``; levels −bins…bins (default 10).
        mask: ``"laplace"`` (the paper's choice) or ``"zero"`` (ablation).
        eps: added to the variance, > 0 (default 1e-7).

    See the module docstring for the exact formulas. Identity in eval mode.
    """

    placement = "slot"

    def __init__(self, rate: float = 0.1, k: float = 2.0, bins: int = 10,
                 mask: str = "laplace", eps: float = 1e-7):
        super().__init__()
        if isinstance(rate, bool) or not isinstance(rate, Real) or not (0.0 <= float(rate) < 1.0):
            raise ValueError(f"rate must be a number in [0, 1), got {rate!r}")
        if isinstance(k, bool) or not isinstance(k, Real) or not math.isfinite(float(k)) or k < 0:
            raise ValueError(f"k must be a finite number >= 0, got {k!r}")
        if isinstance(bins, bool) or not isinstance(bins, Integral) or bins < 1:
            raise ValueError(f"bins must be an integer >= 1, got {bins!r}")
        if not isinstance(mask, str) or mask not in MASKS:
            raise ValueError(f"mask must be one of {', '.join(MASKS)}, got {mask!r}")
        if isinstance(eps, bool) or not isinstance(eps, Real) or not (math.isfinite(float(eps)) and eps > 0):
            raise ValueError(f"eps must be a finite number > 0, got {eps!r}")
        self.rate = float(rate)
        self.k = float(k)
        self.bins = int(bins)
        self.mask = mask
        self.eps = float(eps)

    def extra_repr(self) -> str:
        return f"rate={self.rate}, k={self.k}, bins={self.bins}, mask={self.mask!r}, eps={self.eps}"

    def num_dropped(self, channels: int) -> int:
        """Channels dropped per sample: ``round(rate · C)``."""
        return int(round(self.rate * channels))

    @torch.no_grad()
    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample channel scores ``entropy + k / (var + eps)``, shape (B, C), float64."""
        entropy, variance = channel_statistics(x, self.bins)
        return entropy + self.k / (variance.to(torch.float64) + self.eps)

    @torch.no_grad()
    def select(self, x: torch.Tensor) -> torch.Tensor:
        """Channel indices (B, n) dropped for each sample of ``x``."""
        return select_channels(self.scores(x), self.num_dropped(x.shape[1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        if x.dim() != 4:
            raise ValueError(f"HeuristicDropout expects (B, C, H, W), got shape {tuple(x.shape)}")
        B, C = x.shape[:2]
        n = self.num_dropped(C)
        if n == 0 or x.numel() == 0:
            return x
        chosen = self.select(x)
        base = torch.arange(B, device=x.device).mul_(C).unsqueeze(1)
        index = (chosen + base).view(-1)
        return _ReplacePlanes.apply(x, index, self.mask == "laplace")
