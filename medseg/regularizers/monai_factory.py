"""Registration of the slot regularizers in MONAI's ``Dropout`` layer factory.

:func:`register_monai` adds every slot regularizer to
:data:`monai.networks.layers.factories.Dropout` under its registry key, so MONAI's
networks build it from their ``dropout`` argument::

    from monai.networks.nets import BasicUNet
    from medseg.regularizers import register_monai

    register_monai()
    net = BasicUNet(spatial_dims=3, dropout=("heuristic", {"rate": 0.1, "k": 2.0}))

Explicit and idempotent: nothing is registered at import, a second call changes
nothing. Keys MONAI already defines are left to MONAI (``dropout`` is MONAI's own
``nn.Dropout``, the same method). Only ``placement == "slot"`` methods are
registered: Stochastic Depth rewires a block and Cutout/input dropout act on the
image, neither fits a dropout position.

Where MONAI puts the module (MONAI 1.x): ``BasicUNet`` and ``UNet`` use the
``Convolution`` ADN order "NDA" — conv → norm → *dropout* → activation — in both convs
of every block, so the regularizer sees normalised, not yet activated, features
(negative values included; Heuristic Dropout counts all ``2·bins+1`` levels then).
``DynUNet`` puts it right after every conv (before the norm), the 1×1 output heads
included (and its transposed up-convolutions). MONAI passes ``dropout_dim=1`` by default; the modules read the
dimensionality from the tensor, (B, C, H, W) or (B, C, D, H, W).
"""

from __future__ import annotations

from .registry import available, get

#: marks the factory functions added here (recognised on a second call)
_MARK = "_medseg_regularizer"


def _factory(cls):
    def factory(dim: int | None = None):
        return cls

    setattr(factory, _MARK, cls.key)
    factory.__doc__ = f"medseg regularizer '{cls.key}' ({cls.__name__})"
    return factory


def register_monai() -> list[str]:
    """Register every slot regularizer in MONAI's ``Dropout`` factory under its key.

    Returns the keys that can be used in MONAI's ``dropout=(key, {params})`` (registered
    now or by an earlier call). Idempotent.
    """
    from monai.networks.layers.factories import Dropout as factory

    usable = []
    for key in available():
        cls = get(key)
        if cls.placement != "slot":
            continue
        name = key.upper()
        if name in factory.names:
            if getattr(factory.components[name].value, _MARK, None) == key:
                usable.append(key)
            continue  # MONAI's own entry (dropout): left alone
        factory.add_factory_callable(key, _factory(cls))
        usable.append(key)
    return usable
