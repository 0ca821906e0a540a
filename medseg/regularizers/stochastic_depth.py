"""Stochastic Depth (Huang, Sun, Liu, Sedra, Weinberger — *Deep Networks with
Stochastic Depth*, ECCV 2016, arXiv 1603.09382; seed 004).

Placement ``"residual"``: the block's second conv ``f`` becomes a residual branch and
the module is called as ``reg(h, f)`` with ``h = conv1(x)``:

* training: ``y = h + b · f(h)`` with ``b ~ Bernoulli(p_l)`` drawn independently for
  every *sample* of the mini-batch (``mode="row"``, the per-sample variant used by
  most modern implementations, e.g. torchvision's ``stochastic_depth(mode="row")``);
  ``mode="batch"`` draws one ``b`` for the whole mini-batch, as in the paper's
  original ResNet experiments;
* evaluation: ``y = h + p_l · f(h)`` (the paper's test rule, eq. 5 — the branch is
  re-weighted by its survival probability); deterministic, no random numbers.

Linear decay rule (the paper's eq. 4, ``p_l = 1 − l/L · (1 − p_L)``), with the
model's 0-based stage ``index`` of ``total`` slotted stages (encoder top→bottom,
then decoder bottom→top) as set by :meth:`configure_stage`:

    ``p_l = 1 − (index + 1) / total · (1 − p_last)``

so the first stage survives with ``1 − (1 − p_L)/total`` (the paper's ``l = 1``; its
``p_0 = 1`` is the input, which has no branch) and the last stage with exactly
``p_L``. An unconfigured module behaves as a single stage (``index=0, total=1``),
i.e. ``p_l = p_last``. Default ``p_last = 0.5`` (the paper's ``p_L``).

The branch is always evaluated on the whole batch (so a BatchNorm inside it sees
the same batch every step) and multiplied by the per-sample gate; with
``p_l = 1`` the gate is skipped and no random numbers are drawn.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..checks import check_choice, check_int, check_real
from .base import Regularizer
from .registry import register

MODES = ("row", "batch")


def survival_probability(index: int, total: int, p_last: float) -> float:
    """``p_l = 1 − (index + 1)/total · (1 − p_last)`` for the 0-based stage ``index``."""
    return 1.0 - (index + 1) / total * (1.0 - p_last)


@register("stochastic_depth")
class StochasticDepth(Regularizer):
    """Stochastic Depth (Huang et al., ECCV 2016): randomly skip the residual branch.

    Args:
        p_last: survival probability ``p_L`` of the last stage, in (0, 1]; the
            survival probability decays linearly from the first to the last stage
            (see the module docstring). Default 0.5; 1 disables the method.
        mode: ``"row"`` (default: one Bernoulli gate per sample) or ``"batch"``
            (one gate for the whole mini-batch).

    Call: ``forward(h, branch)`` → ``h + gate · branch(h)``; ``branch`` must map ``h``
    to a tensor of ``h``'s shape. Evaluation mode: ``h + p_l · branch(h)``.
    """

    placement = "residual"

    def __init__(self, p_last: float = 0.5, mode: str = "row"):
        super().__init__()
        self.p_last = check_real("p_last", p_last, 0.0, 1.0, low_open=True)
        self.mode = check_choice("mode", mode, MODES)
        self.index, self.total = 0, 1
        self.survival = survival_probability(0, 1, self.p_last)

    def configure_stage(self, index: int, total: int) -> None:
        """Set this slot's stage (0-based ``index`` of ``total``) and its ``p_l``."""
        total = check_int("total", total, 1)
        index = check_int("index", index, 0)
        if index >= total:
            raise ValueError(f"index must be < total ({total}), got {index}")
        self.index, self.total = index, total
        self.survival = survival_probability(index, total, self.p_last)

    def forward(self, h: torch.Tensor, branch: Callable[[torch.Tensor], torch.Tensor]
                ) -> torch.Tensor:
        out = branch(h)
        if out.shape != h.shape:
            raise ValueError(
                f"stochastic_depth needs a branch that keeps the shape, got {tuple(h.shape)}"
                f" → {tuple(out.shape)}")
        p_l = self.survival
        if not self.training:
            return h + p_l * out if p_l != 1.0 else h + out
        if p_l == 1.0:
            return h + out
        n = h.shape[0] if self.mode == "row" else 1
        gate = torch.empty((n,) + (1,) * (h.dim() - 1), dtype=out.dtype, device=out.device)
        gate.bernoulli_(p_l)
        return h + out * gate

    def extra_repr(self) -> str:
        return (f"p_last={self.p_last:g}, mode={self.mode}, stage={self.index}/{self.total}, "
                f"survival={self.survival:.4g}")
