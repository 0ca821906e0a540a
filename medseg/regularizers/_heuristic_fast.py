"""The optimised eager path of Heuristic Dropout: the same function as
:func:`medseg.regularizers.heuristic.heuristic_dropout_reference`, computed in a few
passes over the tensor. Tests hold it to the reference in 2D and 3D.

What differs from the reference, and why it gives the same result:

* **statistics** — float32 (float64 for float64 input) under ``no_grad``, in chunks of
  planes (~2¹⁸ positions on CPU) so the temporaries stay in cache between passes. Per
  chunk: the variance by the two-pass formula ``Σ(x − mean)² / (N − 1)`` (the value
  of ``torch.var``, whose Welford kernel is much slower on CPU); the level index in
  place on one float buffer; one ``bincount`` over (plane, position mod 4, level) —
  four interleaved sub-histograms per plane so that neighbouring positions, often at
  the same level, do not form one serial chain of increments. No one-hot tensor is
  built. The entropy is ``ln N − Σ_l c_l·ln c_l / N`` with ``c·ln c`` read from a
  table (the same value as ``−Σ p·ln p``).
* **levels** — ``round(tanh(x)·bins) + bins = round(2·bins·sigmoid(2x))`` (``bins``
  is an integer; ``tanh(x) = 2·sigmoid(2x) − 1``): the same quantity with a cheaper
  function. In float32 both forms carry ~1e-7 rounding error per unit, so they can
  differ only for ``tanh(x)·bins`` within ~1e-6 of a boundary ``j + ½`` — where any
  float32 evaluation (``torch.tanh`` included) is ambiguous.
* **mask** — a custom autograd function copies the input once and filters only the
  selected planes: ``3^d·x − box(x)`` (d = 2 or 3 spatial dims; the 3×3 resp.
  3×3×3 box sum done separably on the zero-padded planes). The kernel is symmetric,
  so the backward (its adjoint, the transposed convolution) is the same filter.
* **fused ReLU** — inside a conv block the block hands its ReLU to the module
  (:meth:`~medseg.regularizers.HeuristicDropout.fuse_relu`): the ReLU is applied in
  place chunk by chunk inside the statistics pass, nothing is copied, and only the
  output (kept by the next conv anyway) plus the selected planes' pre-mask values are
  saved for backward.

Measured costs of these choices are in ``medseg bench --section regularizers`` and
the README ("What Heuristic Dropout costs"), not here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: elements per statistics chunk on CPU: the float32 buffer (1 MiB) and the int32 bin
#: index stay cache-resident between passes; large enough that dispatch costs little
_CHUNK_ELEMENTS = 1 << 18
#: the same on other devices (GPU): large, so that a slot is a few kernel launches
_DEVICE_CHUNK_ELEMENTS = 1 << 24
#: sub-histograms per plane in the level count (see _count_levels)
_SUBHIST = 4


def stats_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def channel_statistics(x: torch.Tensor, bins: int, relu: bool = False
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(entropy, variance)`` of every (sample, channel) of ``x`` (B, C, *spatial), each
    (B, C): entropy float64, variance float32 (float64 for float64 input; 0 when a
    channel has one position). ``relu=True``: apply the ReLU to ``x`` in place first,
    chunk by chunk (``x`` must be contiguous) — the fused path."""
    B, C = x.shape[:2]
    n = math.prod(x.shape[2:])
    levels = 2 * bins + 1
    planes = x.view(B * C, n) if relu else x.reshape(B * C, n)
    chunk = _CHUNK_ELEMENTS if x.device.type == "cpu" else _DEVICE_CHUNK_ELEMENTS
    # planes per chunk: ~chunk positions, and no more (plane, level) bins than that
    per_chunk = max(1, min(chunk // max(n, 1), chunk // (levels * _SUBHIST)))
    counts = torch.zeros(B * C, levels, dtype=torch.int64, device=x.device)
    variance = torch.zeros(B * C, dtype=stats_dtype(x.dtype), device=x.device)
    with torch.no_grad():
        _count_levels(planes, bins, per_chunk, counts, variance, relu)
        if n > 1:
            variance.div_(n - 1)
        if x.device.type == "cpu" and not bool(torch.isfinite(variance).all()):
            # an infinite value, or finite values whose float32 squares overflow (near the
            # float32 maximum): the reference's float64 variance (0 for one position). On a
            # GPU the check would be a device sync in every forward: there such inputs (a
            # feature map at ±inf: training has diverged) keep the float32 statistics.
            variance = _variance64(planes, n)
        # −Σ p·ln p with p = c/n equals ln n − Σ c·ln c / n (table lookup of c·ln c)
        clogc = _count_log_count(n, x.device).index_select(0, counts.view(-1)).view(B * C, levels)
        entropy = clogc.sum(dim=1).div_(-n).add_(math.log(n))
    return entropy.view(B, C), variance.view(B, C)


def _variance64(planes: torch.Tensor, n: int) -> torch.Tensor:
    """Unbiased variance of each plane (P, N) in float64, as the reference computes it (0 for
    a single position): the fallback when the float32 statistics overflow."""
    if n <= 1:
        return torch.zeros(planes.shape[0], dtype=torch.float64, device=planes.device)
    return planes.to(torch.float64).var(dim=1)


_CLOGC_CACHE: dict[tuple[int, str], torch.Tensor] = {}


def _count_log_count(n: int, device: torch.device) -> torch.Tensor:
    """float64 table ``c·ln c`` for ``c = 0 … n`` (cached per plane size and device)."""
    key = (n, str(device))
    table = _CLOGC_CACHE.get(key)
    if table is None:
        c = torch.arange(n + 1, dtype=torch.float64, device=device)
        table = torch.special.xlogy(c, c)
        if len(_CLOGC_CACHE) > 64:
            _CLOGC_CACHE.clear()
        _CLOGC_CACHE[key] = table
    return table


def _count_levels(planes: torch.Tensor, bins: int, per_chunk: int, counts: torch.Tensor,
                  variance: torch.Tensor, relu: bool = False) -> None:
    """Fill ``counts`` (levels) and ``variance`` (sums of squares) of ``planes`` (P, N),
    ``per_chunk`` planes at a time (``relu``: ReLU each chunk in place first)."""
    n_planes, n = planes.shape
    levels = 2 * bins + 1
    sdtype = variance.dtype
    rows = min(per_chunk, max(n_planes, 1))
    buf = torch.empty(rows, n, dtype=sdtype, device=planes.device)
    # sub-histograms against the serial increment chain of the CPU loop (not on GPU,
    # where the counts are atomic adds)
    split = _SUBHIST if n >= 16 * _SUBHIST and planes.device.type == "cpu" else 1
    offsets = _bin_offsets(rows, n, levels, split, sdtype, planes.device)
    for start in range(0, n_planes, per_chunk):
        xs = planes[start:start + per_chunk]
        p = xs.shape[0]
        q = buf[:p]
        if relu:
            xs.clamp_min_(0)
        if xs.dtype != sdtype:
            xs = xs.to(sdtype)
        if n > 1:  # two-pass unbiased variance on the cache-resident chunk (÷ (n − 1) later)
            torch.sub(xs, xs.mean(dim=1, keepdim=True), out=q)
            torch.sum(q.square_(), dim=1, out=variance[start:start + p])
        else:  # one position: variance 0 (NaN for a NaN value, so the check below sees it)
            variance[start:start + p] = xs[:, 0] * 0
        # level index round(tanh(x)·bins) + bins = round(2·bins·sigmoid(2x)) in 0 … 2·bins
        torch.mul(xs, 2, out=q)
        q.sigmoid_().mul_(2 * bins).round_()
        # keep the index valid for non-finite planes (their output is NaN anyway); on CPU
        # the check is a cheap look at p variances, elsewhere it would be a sync
        if planes.device.type != "cpu" or not bool(torch.isfinite(variance[start:start + p]).all()):
            q.nan_to_num_(nan=0.0)
        q.add_(offsets[:p])
        hist = torch.bincount(q.to(torch.int32).view(-1), minlength=p * split * levels)
        torch.sum(hist.view(p, split, levels), dim=1, out=counts[start:start + p])


_OFFSETS_CACHE: dict[tuple, torch.Tensor] = {}


def _bin_offsets(rows: int, n: int, levels: int, split: int, dtype: torch.dtype,
                 device: torch.device) -> torch.Tensor:
    """Bin offsets ``(plane·split + position mod split)·levels`` (cached): a (rows, n)
    table, or (rows, 1), broadcast over the positions, when ``split`` is 1."""
    key = (rows, n, levels, split, dtype, str(device))
    table = _OFFSETS_CACHE.get(key)
    if table is None:
        plane = torch.arange(rows, device=device).mul_(split).unsqueeze(1)
        if split > 1:
            plane = plane + torch.arange(n, device=device).remainder_(split).unsqueeze(0)
        table = plane.mul_(levels).to(dtype)
        if len(_OFFSETS_CACHE) > 64:
            _OFFSETS_CACHE.clear()
        _OFFSETS_CACHE[key] = table
    return table


def laplace_planes(planes: torch.Tensor) -> torch.Tensor:
    """Laplace filter (zero padding) of planes (P, H, W) or volumes (P, D, H, W): the 3×3
    kernel with 8 at the centre (3×3×3 with 26), −1 at every neighbour — written as
    ``3^d·x − box(x)``, the box sum done separably (last dim first). Computed in
    float32 (float64 for float64) and cast back. Symmetric, so also its own adjoint."""
    inp = planes.to(stats_dtype(planes.dtype))
    d = inp.dim() - 1
    box = F.pad(inp, (1, 1) * d)
    for dim in range(d, 0, -1):
        size = box.shape[dim] - 2
        summed = box.narrow(dim, 0, size) + box.narrow(dim, 1, size)
        summed += box.narrow(dim, 2, size)
        box = summed
    out = torch.mul(inp, 3 ** d).sub_(box).to(planes.dtype)
    if planes.device.type == "cpu" and out.numel() and not bool(torch.isfinite(out).all()):
        # an infinite value, or values whose sums overflow: 3^d·x − box(x) gives inf − inf
        # = NaN where the reference's convolution gives ±inf; use that convolution
        return laplace_conv(planes)
    return out


def laplace_conv(planes: torch.Tensor) -> torch.Tensor:
    """The reference's Laplace (one grouped convolution in the planes' dtype, zero padding) of
    planes (P, H, W) or volumes (P, D, H, W): the same ±inf and overflow as the reference."""
    d, n = planes.dim() - 1, planes.shape[0]
    kernel = -torch.ones((3,) * d, dtype=planes.dtype, device=planes.device)
    kernel[(1,) * d] = 3 ** d - 1
    conv = F.conv2d if d == 2 else F.conv3d
    return conv(planes.unsqueeze(0), kernel.expand(n, 1, *kernel.shape), padding=1, groups=n)[0]


def replace_planes_(flat: torch.Tensor, index: torch.Tensor, laplace: bool) -> torch.Tensor | None:
    """In place on ``flat`` (B·C, *spatial): planes ``index`` → their Laplace (or zero).
    Returns the Laplace-filtered planes' values from before (``None`` for zero)."""
    if not laplace:
        flat.index_fill_(0, index, 0)
        return None
    before = flat.index_select(0, index)
    flat.index_copy_(0, index, laplace_planes(before))
    return before


def _planes(t: torch.Tensor) -> torch.Tensor:
    return t.view(t.shape[0] * t.shape[1], *t.shape[2:])


class ReplacePlanes(torch.autograd.Function):
    """``out = x`` except the planes ``index`` of x viewed as (B·C, *spatial), which become
    their Laplace (or zero). Backward: identity except those planes, which get the
    adjoint filter (the same filter) or zero."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, index: torch.Tensor, laplace: bool) -> torch.Tensor:
        ctx.save_for_backward(index)
        ctx.laplace = laplace
        out = x.clone(memory_format=torch.contiguous_format)
        replace_planes_(_planes(out), index, laplace)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        (index,) = ctx.saved_tensors
        grad_in = grad.clone(memory_format=torch.contiguous_format)
        replace_planes_(_planes(grad_in), index, ctx.laplace)
        return grad_in, None, None


class ReluReplacePlanes(torch.autograd.Function):
    """``out = relu(pre)`` except the selected planes, which become the Laplace (or zero)
    of ``relu(pre)`` — the block's ReLU and the replacement in one step.

    ``select(entropy, variance)`` maps the statistics of ``relu(pre)`` to the flat plane
    index. Like the in-place ReLU it replaces, it writes into ``pre`` (the norm's
    output, which no backward needs). Saved for backward: the output, the index and,
    for the Laplace mask, the replaced planes' values before replacement. Backward:
    ``threshold_backward(grad, out, 0)`` on kept planes, ``threshold_backward(L·grad,
    relu(pre), 0)`` (or zero) on the replaced ones.
    """

    @staticmethod
    def forward(ctx, pre: torch.Tensor, bins: int, laplace: bool, select) -> torch.Tensor:
        if pre.is_contiguous():
            out = pre
            ctx.mark_dirty(pre)
        else:
            out = pre.contiguous()
        # the ReLU, in place, chunk by chunk inside the statistics pass
        index = select(*channel_statistics(out, bins, relu=True))
        kept = replace_planes_(_planes(out), index, laplace)
        ctx.save_for_backward(out, index, kept)
        ctx.laplace = laplace
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        out, index, kept = ctx.saved_tensors
        grad_in = torch.ops.aten.threshold_backward(grad, out, 0).contiguous()
        flat = _planes(grad_in)
        if ctx.laplace:
            planes = laplace_planes(grad.reshape(flat.shape).index_select(0, index))
            flat.index_copy_(0, index, torch.ops.aten.threshold_backward(planes, kept, 0))
        else:
            flat.index_fill_(0, index, 0)
        return grad_in, None, None, None
