"""Registry of segmentation networks keyed by the names users type in configs
(``model.name``): ``unet``, ``attention_unet``, ``unet3plus``.

``build(name, in_channels, out_channels, ...)`` → a network; an unknown name or option
raises :class:`~medseg.errors.ConfigError` listing the known ones.
"""

from __future__ import annotations

from typing import Any, Mapping

from ..errors import ConfigError
from .attention_unet import AttentionUNet
from .base import SegmentationNet
from .unet import UNet
from .unet3plus import UNet3Plus

_MODELS: dict[str, type[SegmentationNet]] = {
    "unet": UNet,
    "attention_unet": AttentionUNet,
    "unet3plus": UNet3Plus,
}


def available() -> list[str]:
    """Model keys: ``["unet", "attention_unet", "unet3plus"]``."""
    return list(_MODELS)


def get(name: str) -> type[SegmentationNet]:
    """The network class registered as ``name``."""
    if name not in _MODELS:
        raise ConfigError(f"unknown model '{name}' (available: {', '.join(_MODELS)})")
    return _MODELS[name]


def options(name: str) -> dict[str, Any]:
    """Architecture-specific options of ``name`` with their defaults."""
    return dict(get(name).OPTIONS)


def build(name: str, in_channels: int, out_channels: int, base_channels: int = 16,
          depth: int = 4, regularizer: str | Mapping[str, Any] | None = None,
          norm: str = "batch", **opts: Any) -> SegmentationNet:
    """Build the network ``name``.

    Args:
        name: ``"unet"`` | ``"attention_unet"`` | ``"unet3plus"``.
        in_channels: image channels.
        out_channels: classes (logit maps).
        base_channels: width of the first stage, doubled per stage (default 16; papers 64).
        depth: down-sampling steps (default 4); H, W must be divisible by 2**depth.
        regularizer: ``None`` | ``"name"`` | ``{"name": ..., **params}`` — one module of
            that regularizer in every encoder and decoder stage's slot.
        norm: ``"batch"`` (default) or ``"instance"``.
        **opts: architecture options — unet3plus: ``cat_channels=None`` (→ base_channels),
            ``deep_supervision=False``. So that one config can drive every model, an option
            of another architecture is accepted when it is at its default (None/False)
            and ignored; set to anything else it is a ConfigError, as is an unknown option.
    """
    cls = get(name)
    own = {}
    all_options = {k: v for c in _MODELS.values() for k, v in c.OPTIONS.items()}
    for key, value in opts.items():
        if key in cls.OPTIONS:
            own[key] = value
        elif key in all_options:
            if value is not all_options[key]:  # defaults are None / False
                owners = ", ".join(n for n, c in _MODELS.items() if key in c.OPTIONS)
                raise ConfigError(
                    f"model option '{key}' applies only to {owners}, not to '{name}' (got {value!r})")
        else:
            valid = ", ".join(cls.OPTIONS) or "none"
            raise ConfigError(f"model '{name}' has no option '{key}' (valid: {valid})")
    return cls(in_channels, out_channels, base_channels=base_channels, depth=depth,
               regularizer=regularizer, norm=norm, **own)
