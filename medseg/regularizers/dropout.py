"""Unit-wise and channel-wise multiplicative noise: Dropout, Spatial Dropout,
Gaussian Dropout and Uout.

All four sit in the slot between the two convs of a stage, act only in training
mode (evaluation mode returns the input tensor itself and draws no random
numbers), preserve the expectation of every unit, and draw their noise from
torch's global generator (``torch.manual_seed`` makes them reproducible). The
noise has the dtype and device of the input, so they run under float16/bfloat16
autocast and on any device. Each is one elementwise pass (plus the noise draw):
no Python loops over samples or channels.

* ``dropout`` — Srivastava, Hinton, Krizhevsky, Sutskever, Salakhutdinov,
  *Dropout: A Simple Way to Prevent Neural Networks from Overfitting*, JMLR 2014
  (and Hinton et al. 2012, arXiv 1207.0580), "inverted" form:
  ``y = x · m / (1 − p)``, ``m ~ Bernoulli(1 − p)`` i.i.d. per unit. Default ``p = 0.1``.
* ``spatial_dropout`` — Tompson, Goroshin, Jain, LeCun, Bregler, *Efficient Object
  Localization Using Convolutional Networks*, CVPR 2015: the same, but ``m`` is
  drawn once per (sample, channel) and shared by all H×W units of that feature
  map. Default ``p = 0.1``.
* ``gaussian_dropout`` — Srivastava et al. 2014, §10 (and the BN/dropout notes of
  seeds 002/004): ``y = x · ε``, ``ε ~ N(1, σ²)`` i.i.d. per unit with
  ``σ² = p / (1 − p)`` — the variance of Bernoulli dropout's multiplier
  ``m/(1 − p)`` at the same rate. Default ``p = 0.1`` (σ ≈ 0.333).
* ``uout`` — Li, Chen, Hu, Yang, *Understanding the Disharmony between Dropout and
  Batch Normalization by Variance Shift*, CVPR 2019, §5: ``y = x + x·r``,
  ``r ~ U(−β, β)`` i.i.d. per unit (multiplier variance β²/3, which causes less
  variance shift when followed by BatchNorm). Default ``β = 0.1``; ``beta`` must be
  in [0, 1] so the multiplier ``1 + r`` never changes the sign of a unit.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..checks import check_real
from .base import Regularizer
from .registry import register


@register("dropout")
class Dropout(Regularizer):
    """Dropout (Srivastava et al., JMLR 2014): zero each unit i.i.d. with probability
    ``p`` and scale the kept units by ``1/(1 − p)`` (expectation preserved).

    Args:
        p: drop probability of every unit, in [0, 1). Default 0.1; 0 is the identity.

    Shapes: any (B, C, H, W) → same. Evaluation mode: identity.
    """

    def __init__(self, p: float = 0.1):
        super().__init__()
        self.p = check_real("p", p, 0.0, 1.0, high_open=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return F.dropout(x, self.p, training=True)

    def extra_repr(self) -> str:
        return f"p={self.p:g}"


@register("spatial_dropout")
class SpatialDropout(Dropout):
    """Spatial Dropout (Tompson et al., CVPR 2015): zero whole feature maps, i.e. each
    (sample, channel) plane i.i.d. with probability ``p``; kept planes are scaled by
    ``1/(1 − p)`` (expectation preserved).

    Args:
        p: drop probability of every channel of every sample, in [0, 1). Default 0.1.

    Shapes: (B, C, H, W) → same. Evaluation mode: identity. (``p``'s check and the
    repr are :class:`Dropout`'s.)
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.dim() < 2:
            raise ValueError(f"spatial_dropout expects (B, C, ...) input, got shape {tuple(x.shape)}")
        # one Bernoulli draw per (sample, channel), broadcast over the spatial dims
        keep = torch.empty(x.shape[:2] + (1,) * (x.dim() - 2), dtype=x.dtype, device=x.device)
        keep.bernoulli_(1.0 - self.p).div_(1.0 - self.p)
        return x * keep


@register("gaussian_dropout")
class GaussianDropout(Dropout):
    """Gaussian Dropout (Srivastava et al., JMLR 2014, §10): multiply every unit by
    i.i.d. noise ``ε ~ N(1, p/(1 − p))`` (expectation preserved; the variance matches
    Bernoulli dropout of rate ``p``).

    Args:
        p: the equivalent drop rate, in [0, 1). Default 0.1 (noise std ≈ 0.333).

    Shapes: any → same. Evaluation mode: identity. (``p``'s check is :class:`Dropout`'s.)
    """

    @property
    def std(self) -> float:
        """Standard deviation of the multiplicative noise, ``sqrt(p / (1 − p))``."""
        return math.sqrt(self.p / (1.0 - self.p))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        noise = torch.randn_like(x).mul_(self.std).add_(1.0)
        return x * noise

    def extra_repr(self) -> str:
        return f"p={self.p:g}, std={self.std:.4g}"


@register("uout")
class Uout(Regularizer):
    """Uout (Li et al., CVPR 2019): ``y = x + x·r`` with ``r ~ U(−β, β)`` i.i.d. per unit
    (expectation preserved, multiplier variance ``β²/3``).

    Args:
        beta: half-width of the uniform noise, in [0, 1]. Default 0.1; 0 is the identity.

    Shapes: any → same. Evaluation mode: identity.
    """

    def __init__(self, beta: float = 0.1):
        super().__init__()
        self.beta = check_real("beta", beta, 0.0, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.beta == 0.0:
            return x
        # 1 + r, r ~ U(−β, β): one draw and one multiply
        noise = torch.empty_like(x).uniform_(1.0 - self.beta, 1.0 + self.beta)
        return x * noise

    def extra_repr(self) -> str:
        return f"beta={self.beta:g}"
