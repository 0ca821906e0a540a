"""``none`` — the baseline: the slot is the identity."""

from .base import Regularizer
from .registry import register


@register("none")
class NoRegularizer(Regularizer):
    """Identity in training and evaluation (the baseline of every comparison)."""

    stochastic = False
