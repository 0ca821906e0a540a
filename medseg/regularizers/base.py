"""The regularizer contract shared by every method in the catalogue.

A regularizer is an ``nn.Module`` mapping (B, C, H, W) to the same shape that acts
only in training mode. Where it sits is its class attribute ``placement``:

* ``"slot"``     — between the two convs of every encoder/decoder stage:
  the block computes ``conv2(reg(conv1(x)))``;
* ``"residual"`` — the block's second conv becomes a residual branch and the
  regularizer decides how it is added: the block computes ``reg(h, conv2)`` with
  ``h = conv1(x)`` (Stochastic Depth);
* ``"input"``    — acts on the network input once (Cutout, input dropout); the
  slots of the blocks stay empty (identity).

A model asks for one module per stage through :meth:`Regularizer.configure_stage`,
so methods whose strength depends on depth (Stochastic Depth's linear decay) get
their stage index.
"""

from __future__ import annotations

from typing import ClassVar

from torch import nn


class Regularizer(nn.Module):
    """Base class: identity unless a subclass overrides :meth:`forward`."""

    placement: ClassVar[str] = "slot"
    #: draws random numbers in training mode (Monte Carlo sampling in ``medseg predict`` needs it)
    stochastic: ClassVar[bool] = True
    #: registry key, set by :func:`medseg.regularizers.registry.register`
    key: ClassVar[str] = ""

    def configure_stage(self, index: int, total: int) -> None:
        """Called once by the model with this slot's stage (0-based) and the stage count."""

    def forward(self, x):  # noqa: D401 - identity
        return x
