"""Heuristic Dropout (Shi, Liu, Tao, Yuan — ICASSP 2022).

*Heuristic Dropout: An Efficient Regularization Method for Medical Image
Segmentation Models*, Tsinghua University, ICASSP 2022. Normative description:
``shared/spec/heuristic-dropout.md``.

Three pieces, in timm's style (``layers/drop.py``):

* :func:`heuristic_dropout_reference` — **the definition**: the spec's formula step by
  step in float64, readable and slow. Tests and docs use it as the method.
* :func:`heuristic_dropout` — the functional form users call; an optimisation of the
  reference (``_heuristic_fast``: chunked statistics without one-hot tensors, the
  Laplace filter only on the dropped channels) that the tests hold to it in 2D and 3D.
* :class:`HeuristicDropout` — the thin ``nn.Module`` (registry key ``heuristic``);
  identity in evaluation mode.

In short, per sample and channel of ``x`` (B, C, H, W) or (B, C, D, H, W): score
``s = entropy(round(tanh(x)·bins)) + k / (var(x) + eps)``; the ``round(rate·C)``
channels with the highest scores are replaced by their Laplace-filtered version
(3×3, or 3×3×3 in 3D; zero padding) or by zeros (``mask="zero"``). No rescaling,
no randomness; the selection carries no gradient. Ties go to the lower channel index.

``skip_constant`` (default ``False`` = the paper's method) is an ablation **not in
the paper**: channels whose variance is ≤ ``eps`` (constant, e.g. all zero after the
ReLU — the highest possible score ``k/eps``, yet replacing an all-zero channel by
its Laplace or by zeros changes nothing) are never selected, so the budget goes to
channels a drop changes; a sample with fewer live channels drops fewer.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..checks import check_bool, check_choice, check_int, check_real
from . import _heuristic_fast as fast
from .base import Regularizer
from .registry import register

MASKS = ("laplace", "zero")


# ----------------------------------------------------------------------------- the definition
def heuristic_dropout_reference(x: torch.Tensor, rate: float = 0.1, k: float = 2.0, bins: int = 10,
                                mask: str = "laplace", eps: float = 1e-7,
                                skip_constant: bool = False) -> torch.Tensor:
    """Heuristic Dropout in training mode, as the spec states it (statistics in float64).

    ``x``: (B, C, H, W) or (B, C, D, H, W). Differentiable in ``x`` for a fixed selection.
    """
    _check_type(x)
    B, C = x.shape[:2]
    planes = x.detach().to(torch.float64).flatten(2)  # (B, C, N), N = H·W or D·H·W
    n_pos = planes.shape[2]
    # 1. unbiased variance over the N positions (taken as 0 for a single position)
    variance = planes.var(dim=2) if n_pos > 1 else planes.new_zeros(B, C)
    # 2. quantise: level round(tanh(x)·bins), one of −bins … bins
    level = torch.round(torch.tanh(planes) * bins).long() + bins
    # 3. histogram over the 2·bins+1 levels → p → natural-log entropy (0·ln 0 = 0)
    p = F.one_hot(level, 2 * bins + 1).sum(dim=2) / n_pos
    entropy = -torch.special.xlogy(p, p).sum(dim=2)
    # 4. the score
    score = entropy + k / (variance + eps)
    live = variance > eps
    if skip_constant:  # ablation, not in the paper: constant channels are never chosen
        score = score.masked_fill(~live, -math.inf)
    # 5. per sample, the round(rate·C) highest scores (stable sort: ties → lower index)
    chosen = torch.sort(score, dim=1, descending=True, stable=True).indices[:, :int(round(rate * C))]
    drop = torch.zeros(B, C, dtype=torch.bool, device=x.device).scatter_(1, chosen, True)
    if skip_constant:
        drop &= live
    # 6. dropped channels → Laplace (or zero); kept channels unchanged; no rescaling
    replaced = laplace_reference(x) if mask == "laplace" else torch.zeros_like(x)
    return torch.where(drop.view(B, C, *[1] * (x.dim() - 2)), replaced, x)


def laplace_reference(x: torch.Tensor) -> torch.Tensor:
    """Per-channel Laplace filter of (B, C, H, W) or (B, C, D, H, W), zero padding 1:
    −1 at every neighbour of the 3×3 (3×3×3) window, 8 (26) at the centre."""
    d, C = x.dim() - 2, x.shape[1]
    kernel = -torch.ones((3,) * d, dtype=x.dtype, device=x.device)
    kernel[(1,) * d] = 3 ** d - 1
    conv = F.conv2d if d == 2 else F.conv3d
    return conv(x, kernel.expand(C, 1, *kernel.shape), padding=1, groups=C)


# ----------------------------------------------------------------------------- parameters
def check_params(rate, k, bins, mask, eps, skip_constant) -> tuple[float, float, int, str, float, bool]:
    """Validate the parameters (one-line ``ValueError`` naming the bad one); return them typed."""
    rate = check_real("rate", rate, 0.0, 1.0, high_open=True)
    k = check_real("k", k, 0.0, math.inf, high_open=True)
    bins = check_int("bins", bins, 1)
    mask = check_choice("mask", mask, MASKS)
    eps = check_real("eps", eps, 0.0, math.inf, low_open=True, high_open=True)
    skip_constant = check_bool("skip_constant", skip_constant)
    return rate, k, bins, mask, eps, skip_constant


def _check_type(x) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"HeuristicDropout expects a torch.Tensor, got {type(x).__name__}")


def _check_input(x: torch.Tensor) -> None:
    _check_type(x)
    if x.dim() not in (4, 5):
        raise ValueError("HeuristicDropout expects (B, C, H, W) or (B, C, D, H, W), "
                         f"got shape {tuple(x.shape)}")


# ----------------------------------------------------------------------------- the fast path
def channel_statistics(x: torch.Tensor, bins: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """``(entropy, variance)`` per (sample, channel), each (B, C), of ``x`` (B, C, H, W) or
    (B, C, D, H, W): entropy (float64) of the ``round(tanh(x)·bins)`` histogram, unbiased
    variance (float32; float64 for float64 input; 0 for a single position)."""
    _check_input(x)
    return fast.channel_statistics(x, bins)


def select_channels(score: torch.Tensor, n: int) -> torch.Tensor:
    """Indices (B, n) of the ``n`` largest scores per row; ties go to the lower index."""
    return torch.sort(score, dim=1, descending=True, stable=True).indices[:, :n]


def drop_mask(entropy: torch.Tensor, variance: torch.Tensor, rate: float = 0.1, k: float = 2.0,
              eps: float = 1e-7, skip_constant: bool = False) -> torch.Tensor:
    """Boolean (B, C): the channels Heuristic Dropout replaces, from their statistics."""
    B, C = entropy.shape
    variance = variance.to(torch.float64)
    score = entropy + k / (variance + eps)
    live = variance > eps
    if skip_constant:
        score = score.masked_fill(~live, -math.inf)
    chosen = select_channels(score, int(round(rate * C)))
    drop = torch.zeros(B, C, dtype=torch.bool, device=entropy.device).scatter_(1, chosen, True)
    return drop & live if skip_constant else drop


def _plane_index(entropy, variance, rate, k, eps, skip_constant) -> torch.Tensor:
    """Flat indices into (B·C, *spatial) of the planes to replace, sample by sample."""
    C = entropy.shape[1]
    if not skip_constant:  # exactly round(rate·C) per sample: no boolean mask, no sync
        score = entropy + k / (variance.to(torch.float64) + eps)
        chosen = select_channels(score, int(round(rate * C)))
        base = torch.arange(chosen.shape[0], device=chosen.device).mul_(C).unsqueeze(1)
        return (chosen + base).view(-1)
    return drop_mask(entropy, variance, rate, k, eps, True).view(-1).nonzero().view(-1)


def heuristic_dropout(x: torch.Tensor, rate: float = 0.1, k: float = 2.0, bins: int = 10,
                      mask: str = "laplace", eps: float = 1e-7, training: bool = True,
                      skip_constant: bool = False) -> torch.Tensor:
    """Heuristic Dropout of ``x`` (B, C, H, W) or (B, C, D, H, W); identity unless
    ``training``. The same values and gradients as :func:`heuristic_dropout_reference`
    (float rounding of the Laplace aside), in a few passes over the tensor."""
    _check_type(x)
    params = check_params(rate, k, bins, mask, eps, skip_constant)
    return _heuristic_dropout(x, *params) if training else x


def _heuristic_dropout(x, rate, k, bins, mask, eps, skip_constant) -> torch.Tensor:
    """:func:`heuristic_dropout` in training mode, parameters already checked."""
    _check_input(x)
    if int(round(rate * x.shape[1])) == 0 or x.numel() == 0:
        return x
    index = _plane_index(*fast.channel_statistics(x, bins), rate, k, eps, skip_constant)
    return fast.ReplacePlanes.apply(x, index, mask == "laplace")


# ----------------------------------------------------------------------------- the module
@register("heuristic")
class HeuristicDropout(Regularizer):
    """Heuristic Dropout (Shi et al., ICASSP 2022): per sample, replace the
    ``round(rate·C)`` channels with the highest ``entropy + k/(var+eps)`` by their
    Laplace-filtered version (``mask="zero"``: by zeros). 2D and 3D feature maps.

    Args:
        rate: fraction of channels dropped per sample, in [0, 1) (default 0.1).
        k: weight of the inverse-variance heuristic, ≥ 0 (default 2.0; the paper's
            most stable value, k=3 had the best mean).
        bins: quantisation ``round(tanh(x)·bins)``; levels −bins…bins (default 10).
        mask: ``"laplace"`` (the paper's choice) or ``"zero"`` (its ablation).
        eps: added to the variance, > 0 (default 1e-7).
        skip_constant: never select channels with variance ≤ eps (default False;
            an ablation beyond the paper, see the module docstring).

    Definition: :func:`heuristic_dropout_reference`. Identity in evaluation mode.
    """

    placement = "slot"
    stochastic = False  # deterministic: the scores pick the channels, no random numbers
    #: the conv blocks may hand this module the ReLU that precedes the slot (:meth:`fuse_relu`)
    fuses_relu = True

    def __init__(self, rate: float = 0.1, k: float = 2.0, bins: int = 10,
                 mask: str = "laplace", eps: float = 1e-7, skip_constant: bool = False):
        super().__init__()
        (self.rate, self.k, self.bins, self.mask, self.eps,
         self.skip_constant) = check_params(rate, k, bins, mask, eps, skip_constant)
        #: ``"relu"`` once :meth:`fuse_relu` moved the preceding ReLU in here
        self.activation: str | None = None

    def extra_repr(self) -> str:
        text = (f"rate={self.rate}, k={self.k}, bins={self.bins}, mask={self.mask!r}, "
                f"eps={self.eps}, skip_constant={self.skip_constant}")
        return text + (f", activation={self.activation!r}" if self.activation else "")

    def fuse_relu(self) -> None:
        """Take over the ReLU that precedes the slot: ``forward(pre)`` then computes
        ``HeuristicDropout(relu(pre))`` — the same values and gradients as the two modules
        in sequence (tested) — in one autograd step, keeping one full-size tensor for
        backward instead of two and copying nothing. Called by
        :class:`~medseg.models.blocks.ConvBlock` and :class:`~medseg.models.blocks.FusionConv`.
        In evaluation mode the fused module is the in-place ReLU."""
        self.activation = "relu"

    def num_dropped(self, channels: int) -> int:
        """Channels dropped per sample: ``round(rate · C)`` (fewer with ``skip_constant``)."""
        return int(round(self.rate * channels))

    def statistics(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(entropy, variance)``, each (B, C), of the slot input ``x`` (see :func:`channel_statistics`)."""
        return channel_statistics(x, self.bins)

    def dropped(self, entropy: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
        """Boolean (B, C) of the channels this module replaces, given their statistics."""
        return drop_mask(entropy, variance, self.rate, self.k, self.eps, self.skip_constant)

    def scores_of(self, entropy: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
        """``entropy + k / (variance + eps)`` in float64."""
        return entropy + self.k / (variance.to(torch.float64) + self.eps)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample channel scores ``entropy + k / (var + eps)``, shape (B, C), float64."""
        return self.scores_of(*self.statistics(x))

    def select(self, x: torch.Tensor) -> torch.Tensor:
        """Channel indices (B, n) dropped for each sample of ``x`` (without ``skip_constant``)."""
        return select_channels(self.scores(x), self.num_dropped(x.shape[1]))

    def _index(self, entropy: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
        return _plane_index(entropy, variance, self.rate, self.k, self.eps, self.skip_constant)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_type(x)
        if self.activation != "relu":
            if not self.training:
                return x
            return _heuristic_dropout(x, self.rate, self.k, self.bins, self.mask, self.eps,
                                      self.skip_constant)
        if not self.training or self.num_dropped(x.shape[1]) == 0 or x.numel() == 0:
            return F.relu(x, inplace=True)
        _check_input(x)
        return fast.ReluReplacePlanes.apply(x, self.bins, self.mask == "laplace", self._index)
