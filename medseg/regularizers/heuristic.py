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

Implementation (one eager path, no compilation; costs measured on the project's
2-core CPU with ``medseg bench``):

* statistics — computed in float32 (float64 for float64 input) under ``no_grad``
  over chunks of ~2¹⁸ pixels, so the temporaries stay in cache between passes. Per
  chunk: the variance by the two-pass formula ``Σ(x − mean)² / (H·W − 1)`` (the
  value of ``torch.var``, whose Welford kernel is ~20× slower here); the level
  index in place on one float buffer; one ``bincount`` over (plane, pixel mod 4,
  level) — four interleaved sub-histograms per plane so that neighbouring pixels,
  often at the same level, do not form one serial chain of increments. No
  one-hot tensor is ever built. The entropy is ``ln(H·W) − Σ_l c_l·ln c_l / (H·W)``
  with ``c·ln c`` read from a table (the same value as ``−Σ p·ln p``).
* levels — via the identity ``tanh(x) = 2·sigmoid(2x) − 1``, i.e.
  ``round(tanh(x)·bins) + bins = round(2·bins·sigmoid(2x))`` (``bins`` is an
  integer): the same quantity, but ``sigmoid`` is ~10× cheaper than ``tanh`` on
  CPU. In float32 both forms carry a rounding error of ~1e-7 per unit, so they can
  put a value in different neighbouring levels only when ``tanh(x)·bins`` lies
  within ~1e-6 of a level boundary ``j + ½`` — exactly where any float32
  evaluation of the formula (``torch.tanh`` included) is ambiguous.
* mask — a custom autograd function copies the input once and filters only the
  ``n·B`` selected planes (``9·x − box3×3(x)``, the box sum done separably: a
  1→1 ``conv2d`` is far slower on CPU); its backward is one copy of the incoming
  gradient plus the adjoint filter on those planes (the kernel is symmetric, so
  the adjoint — the transposed convolution — is the same filter).
* inside a conv block — the block hands its ReLU to the module
  (:meth:`HeuristicDropout.fuse_relu`): the ReLU is applied in place chunk by
  chunk inside the statistics pass (each chunk is still in cache when its
  statistics are taken), no copy of the input or of its gradient is made, and
  only the output (which the next conv keeps anyway) plus the selected planes'
  pre-mask values are saved for backward.
* threads — every op uses torch's intra-op threads. Measured and rejected
  (U-Net step, see ``medseg bench --section unet_step``): running the statistics
  on one thread (×1.15 the plain step against ×1.09–1.12 threaded on a quiet
  2-core machine; with the other core busy ×1.15–1.20 against ×1.23–1.26), and
  sharing the chunks with a Python helper thread (no faster inside a step: the
  other core is still held by the OpenMP worker spinning after the preceding norm).
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
#: elements per statistics chunk: its float32 buffer (1 MiB) and int32 bin index stay
#: cache-resident between passes; large enough that per-op dispatch costs little
_CHUNK_ELEMENTS = 1 << 18
#: the same on other devices (GPU): large, so that a slot is a few kernel launches
#: (a 64 MiB float32 buffer)
_DEVICE_CHUNK_ELEMENTS = 1 << 24


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
    return _channel_statistics(x, bins)


def _channel_statistics(x: torch.Tensor, bins: int, relu: bool = False
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`channel_statistics`; ``relu=True``: first apply the ReLU to ``x`` in place
    (contiguous ``x``), chunk by chunk, so each chunk is still in cache for its
    statistics — the fused path of :class:`_ReluReplacePlanes`."""
    B, C, H, W = x.shape
    hw = H * W
    levels = 2 * bins + 1
    planes = x.view(B * C, hw) if relu else x.reshape(B * C, hw)
    sdtype = _stats_dtype(x.dtype)
    n_planes = B * C
    # planes per chunk: ~_CHUNK_ELEMENTS pixels, and no more (plane, level) bins than that
    chunk = _CHUNK_ELEMENTS if x.device.type == "cpu" else _DEVICE_CHUNK_ELEMENTS
    per_chunk = max(1, min(chunk // max(hw, 1), chunk // (levels * _SUBHIST)))
    counts = torch.zeros(n_planes, levels, dtype=torch.int64, device=x.device)
    variance = torch.zeros(n_planes, dtype=sdtype, device=x.device)
    _count_levels(planes, bins, per_chunk, counts, variance, relu)
    if hw > 1:
        variance.div_(hw - 1)
    # −Σ p·ln p with p = c/hw equals ln(hw) − Σ c·ln c / hw: look c·ln c up in a table
    # (0·ln 0 = 0) instead of taking a float64 log of every (plane, level) count
    clogc = _count_log_count(hw, x.device).index_select(0, counts.view(-1)).view(n_planes, levels)
    entropy = clogc.sum(dim=1).div_(-hw).add_(math.log(hw))
    return entropy.view(B, C), variance.view(B, C)


_CLOGC_CACHE: dict[tuple[int, str], torch.Tensor] = {}


def _count_log_count(hw: int, device: torch.device) -> torch.Tensor:
    """float64 table ``c·ln c`` for ``c = 0 … hw`` (cached per plane size and device)."""
    key = (hw, str(device))
    table = _CLOGC_CACHE.get(key)
    if table is None:
        c = torch.arange(hw + 1, dtype=torch.float64, device=device)
        table = torch.special.xlogy(c, c)
        if len(_CLOGC_CACHE) > 64:
            _CLOGC_CACHE.clear()
        _CLOGC_CACHE[key] = table
    return table


@torch.no_grad()
def _count_levels(planes: torch.Tensor, bins: int, per_chunk: int, counts: torch.Tensor,
                  variance: torch.Tensor, relu: bool = False) -> None:
    """Fill ``counts`` (levels) and ``variance`` of ``planes``, ``per_chunk`` planes at a
    time (``relu``: apply the ReLU to each chunk of ``planes`` in place first)."""
    n_planes, hw = planes.shape
    levels = 2 * bins + 1
    sdtype = variance.dtype
    rows = min(per_chunk, max(n_planes, 1))
    buf = torch.empty(rows, hw, dtype=sdtype, device=planes.device)
    # sub-histograms against the serial increment chain of the CPU loop (not on GPU,
    # where the counts are atomic adds)
    split = _SUBHIST if hw >= 16 * _SUBHIST and planes.device.type == "cpu" else 1
    offsets = _bin_offsets(rows, hw, levels, split, sdtype, planes.device)
    for start in range(0, n_planes, per_chunk):
        xs = planes[start:start + per_chunk]
        p = xs.shape[0]
        q = buf[:p]
        if relu:
            xs.clamp_min_(0)
        if xs.dtype != sdtype:
            xs = xs.to(sdtype)
        if hw > 1:
            # two-pass unbiased variance on the cache-resident chunk
            torch.sub(xs, xs.mean(dim=1, keepdim=True), out=q)
            torch.sum(q.square_(), dim=1, out=variance[start:start + p])  # ÷ (hw − 1) below
        else:  # one pixel: variance 0 (NaN for a NaN pixel, so the check below sees it)
            variance[start:start + p] = xs[:, 0] * 0
        # level index round(tanh(x)·bins) + bins = round(2·bins·sigmoid(2x)) in 0 … 2·bins
        torch.mul(xs, 2, out=q)
        q.sigmoid_().mul_(2 * bins).round_()
        # keep the level index valid for non-finite planes (their output is NaN anyway);
        # on CPU the check is a cheap look at p variances, elsewhere it would be a sync
        if planes.device.type != "cpu" or not bool(torch.isfinite(variance[start:start + p]).all()):
            q.nan_to_num_(nan=0.0)
        # one bincount over (plane, pixel mod split, level): neighbouring pixels, often
        # at the same level, land in different counters (no serial increment chain)
        q.add_(offsets[:p])
        hist = torch.bincount(q.to(torch.int32).view(-1), minlength=p * split * levels)
        torch.sum(hist.view(p, split, levels), dim=1, out=counts[start:start + p])


#: sub-histograms per plane in the level count (see _count_levels)
_SUBHIST = 4
_OFFSETS_CACHE: dict[tuple, torch.Tensor] = {}


def _bin_offsets(rows: int, hw: int, levels: int, split: int, dtype: torch.dtype,
                 device: torch.device) -> torch.Tensor:
    """Bin offsets ``(plane·split + pixel mod split)·levels`` (cached): a (rows, hw) table,
    or (rows, 1), broadcast over the pixels, when ``split`` is 1."""
    key = (rows, hw, levels, split, dtype, str(device))
    table = _OFFSETS_CACHE.get(key)
    if table is None:
        plane = torch.arange(rows, device=device).mul_(split).unsqueeze(1)
        if split > 1:
            plane = plane + torch.arange(hw, device=device).remainder_(split).unsqueeze(0)
        table = plane.mul_(levels).to(dtype)
        if len(_OFFSETS_CACHE) > 64:
            _OFFSETS_CACHE.clear()
        _OFFSETS_CACHE[key] = table
    return table


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


def _replace(flat: torch.Tensor, index: torch.Tensor, laplace: bool) -> torch.Tensor | None:
    """In place on planes (N, H, W): planes ``index`` → their Laplace (or zero).
    Returns the Laplace-filtered planes' values from before (``None`` for zero)."""
    if not laplace:
        flat.index_fill_(0, index, 0)
        return None
    before = flat.index_select(0, index)
    flat.index_copy_(0, index, laplace_planes(before))
    return before


def _plane_index(chosen: torch.Tensor, channels: int) -> torch.Tensor:
    """Channel indices (B, n) per sample → plane indices into (B·C, H, W), flat."""
    base = torch.arange(chosen.shape[0], device=chosen.device).mul_(channels).unsqueeze(1)
    return (chosen + base).view(-1)


class _ReplacePlanes(torch.autograd.Function):
    """``out = x`` except the planes ``index`` of x viewed as (B·C, H, W), which become
    ``Laplace(x[plane])`` (or zero). Backward: identity except those planes, which
    get the adjoint filter (or zero)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, index: torch.Tensor, laplace: bool) -> torch.Tensor:
        B, C, H, W = x.shape
        ctx.save_for_backward(index)
        ctx.laplace = laplace
        out = x.clone(memory_format=torch.contiguous_format)
        _replace(out.view(B * C, H, W), index, laplace)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        B, C, H, W = grad.shape
        (index,) = ctx.saved_tensors
        grad_in = grad.clone(memory_format=torch.contiguous_format)
        _replace(grad_in.view(B * C, H, W), index, ctx.laplace)
        return grad_in, None, None


class _ReluReplacePlanes(torch.autograd.Function):
    """``out = relu(pre)`` except the planes ``index`` (of ``out`` viewed as (B·C, H, W)),
    which become ``Laplace(relu(pre[plane]))`` (or zero) — the block's ReLU and the
    replacement in one step (see :meth:`HeuristicDropout.fuse_relu`).

    Like the in-place ReLU it replaces, it writes into ``pre`` (the norm's output,
    which no backward needs; autograd's version check would report otherwise).
    Saved for backward: the output (which the next conv keeps anyway), the index,
    and — for the Laplace mask — the replaced planes' values before replacement
    (``rate`` of the tensor). Backward: ``threshold_backward(grad, out, 0)`` (the
    ReLU derivative on its result) on kept planes and ``threshold_backward(Lᵀ·grad,
    relu(pre), 0)`` (or zero) on the replaced planes.
    """

    @staticmethod
    def forward(ctx, pre: torch.Tensor, module: HeuristicDropout) -> torch.Tensor:
        B, C, H, W = pre.shape
        if pre.is_contiguous():
            out = pre
            ctx.mark_dirty(pre)
        else:
            out = pre.contiguous()
        laplace = module.mask == "laplace"
        flat = out.view(B * C, H, W)
        # the ReLU, in place, chunk by chunk inside the statistics pass
        scores = module.scores_of(*_channel_statistics(out, module.bins, relu=True))
        index = _plane_index(select_channels(scores, module.num_dropped(C)), C)
        kept = _replace(flat, index, laplace)
        ctx.save_for_backward(out, index, kept)
        ctx.laplace = laplace
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        out, index, kept = ctx.saved_tensors
        B, C, H, W = out.shape
        grad_in = torch.ops.aten.threshold_backward(grad, out, 0).contiguous()
        flat = grad_in.view(B * C, H, W)
        if ctx.laplace:
            planes = laplace_planes(grad.reshape(B * C, H, W).index_select(0, index))
            flat.index_copy_(0, index, torch.ops.aten.threshold_backward(planes, kept, 0))
        else:
            flat.index_fill_(0, index, 0)
        return grad_in, None


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
    #: the conv blocks may hand this module the ReLU that precedes the slot (:meth:`fuse_relu`)
    fuses_relu = True

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
        #: ``"relu"`` once :meth:`fuse_relu` moved the preceding ReLU in here
        self.activation: str | None = None

    def extra_repr(self) -> str:
        text = f"rate={self.rate}, k={self.k}, bins={self.bins}, mask={self.mask!r}, eps={self.eps}"
        return text + (f", activation={self.activation!r}" if self.activation else "")

    def fuse_relu(self) -> None:
        """Take over the ReLU that precedes the slot: ``forward(pre)`` then computes
        ``HeuristicDropout(relu(pre))`` — the same values and gradients as the two
        modules in sequence (tested) — in one autograd step.

        Called by :class:`~medseg.models.blocks.ConvBlock` and
        :class:`~medseg.models.blocks.FusionConv`, which then build their first unit
        without its activation. Why: the ReLU keeps its output for its backward, the
        next conv keeps the slot's output for its own; as two modules that is two
        full-size tensors per slot, fused it is one (plus the replaced planes' values
        from before the mask), and the copy of the input and of its gradient disappear.
        In evaluation mode the fused module is the in-place ReLU.
        """
        self.activation = "relu"

    def num_dropped(self, channels: int) -> int:
        """Channels dropped per sample: ``round(rate · C)``."""
        return int(round(self.rate * channels))

    @torch.no_grad()
    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample channel scores ``entropy + k / (var + eps)``, shape (B, C), float64."""
        return self.scores_of(*channel_statistics(x, self.bins))

    def scores_of(self, entropy: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
        """``entropy + k / (variance + eps)`` in float64."""
        return entropy + self.k / (variance.to(torch.float64) + self.eps)

    @torch.no_grad()
    def select(self, x: torch.Tensor) -> torch.Tensor:
        """Channel indices (B, n) dropped for each sample of ``x``."""
        return select_channels(self.scores(x), self.num_dropped(x.shape[1]))

    @torch.no_grad()
    def plane_index(self, x: torch.Tensor) -> torch.Tensor:
        """Indices into ``x`` viewed as (B·C, H, W) of the planes dropped, sample by sample."""
        return _plane_index(self.select(x), x.shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fused = self.activation == "relu"
        if self.training and x.dim() != 4:
            raise ValueError(f"HeuristicDropout expects (B, C, H, W), got shape {tuple(x.shape)}")
        if not self.training or self.num_dropped(x.shape[1]) == 0 or x.numel() == 0:
            return F.relu(x, inplace=True) if fused else x
        if fused:
            return _ReluReplacePlanes.apply(x, self)
        return _ReplacePlanes.apply(x, self.plane_index(x), self.mask == "laplace")
