"""What every segmentation network here shares: argument checks, regularizer slots,
the input-level regularizer and the size check of :meth:`SegmentationNet.forward`."""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import torch
from torch import nn

from .. import regularizers
from ..checks import check_int, check_real
from ..errors import ConfigError
from .blocks import check_size, norm_spec


def checked(check: Callable[..., Any], name: str, value: Any, *args: Any, **kwargs: Any) -> Any:
    """``check(name, value, *args, **kwargs)`` (a :mod:`medseg.checks` function) with its
    ValueError raised as a ConfigError naming the model argument: ``model depth must be …``."""
    try:
        return check(name, value, *args, **kwargs)
    except ValueError as exc:
        raise ConfigError(f"model {exc}") from None


class SegmentationNet(nn.Module):
    """Base of the encoder–decoder networks: returns logits (B, out_channels, H, W).

    Args:
        in_channels: image channels (1 for CT, 1 or 3 for endoscopy frames).
        out_channels: classes (logit maps).
        base_channels: width of the first stage; stage i has ``base_channels · 2**i``
            channels (default 16 for CPU runs; 64 in the papers).
        depth: number of down-sampling steps (default 4, as in the papers); H and W of
            the input must be divisible by ``2**depth``.
        regularizer: ``None`` | ``"name"`` | ``{"name": ..., **params}`` — built into
            every stage's slot through :func:`medseg.regularizers.spec_to_factory`.
        norm: ``"batch"`` (default) or ``"instance"``.

    Subclasses build ``2·depth + 1`` stage blocks — ``depth + 1`` encoder stages (the
    last is the bottleneck) then ``depth`` decoder stages — each with one slot from
    :meth:`_make_slots` (encoder top→bottom, then decoder bottom→top), implement
    :meth:`_forward`, and set ``self.head`` (the final 1×1 conv).
    """

    #: architecture-specific keyword options and their defaults
    OPTIONS: Mapping[str, Any] = {}

    def __init__(self, in_channels: int, out_channels: int, base_channels: int = 16,
                 depth: int = 4, regularizer: str | Mapping[str, Any] | None = None,
                 norm: str = "batch"):
        super().__init__()
        self.in_channels = checked(check_int, "in_channels", in_channels, 1)
        self.out_channels = checked(check_int, "out_channels", out_channels, 1)
        self.base_channels = checked(check_int, "base_channels", base_channels, 1)
        self.depth = checked(check_int, "depth", depth, 1)
        norm_spec(norm)  # validate early
        self.norm = norm
        self._make_slot, input_module = regularizers.spec_to_factory(regularizer)
        self.regularizer_name = _spec_name(regularizer)
        #: applied to the network input first (Cutout, input dropout); None otherwise
        self.input_regularizer = input_module

    @property
    def num_slots(self) -> int:
        """Stage blocks carrying a regularizer slot: depth+1 encoder + depth decoder."""
        return 2 * self.depth + 1

    def _make_slots(self) -> list[nn.Module]:
        total = self.num_slots
        slots = [self._make_slot(i, total) for i in range(total)]
        del self._make_slot  # a closure; keep the module picklable
        return slots

    def heads(self) -> list[nn.Module]:
        """The 1×1 convs that produce logits: :attr:`head` and any deep-supervision heads."""
        return [self.head, *(getattr(self, "aux_heads", None) or [])]

    def init_foreground_prior(self, prior: float) -> None:
        """Start every head at foreground probability ``prior`` for every pixel.

        The prior-probability initialisation of Lin et al., "Focal Loss for Dense Object
        Detection" (ICCV 2017) for a rare class: head weights N(0, 0.01²), background bias 0,
        the other classes' bias log(prior / (1 − prior)). Without it, a seed whose random
        head starts out predicting foreground on much of the image first learns, through
        the cross-entropy of ~99.8 % background pixels, to saturate to background, and the
        Dice term's gradient through the saturated softmax can keep it there.
        """
        prior = checked(check_real, "foreground prior", prior, 0.0, 1.0, low_open=True, high_open=True)
        with torch.no_grad():
            for head in self.heads():
                nn.init.normal_(head.weight, std=0.01)
                head.bias.fill_(math.log(prior / (1.0 - prior)))
                head.bias[0] = 0.0

    def forward(self, x: torch.Tensor):
        check_size(x, self.depth, self.in_channels)
        if self.input_regularizer is not None:
            x = self.input_regularizer(x)
        return self._forward(x)

    def _forward(self, x: torch.Tensor):  # pragma: no cover - abstract
        raise NotImplementedError

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
                f"base_channels={self.base_channels}, depth={self.depth}, norm={self.norm}, "
                f"regularizer={self.regularizer_name}")


def _spec_name(spec) -> str:
    if spec is None:
        return "none"
    if isinstance(spec, str):
        return spec
    return str(dict(spec).get("name", "none"))
