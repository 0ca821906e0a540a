"""Segmentation networks: U-Net, Attention U-Net and UNet3+, each built from one conv
block with a regularizer slot between its two convs (see :mod:`.blocks`)::

    from medseg import models
    models.available()                       # ['unet', 'attention_unet', 'unet3plus']
    net = models.build("unet", 1, 2, base_channels=16, depth=4,
                       regularizer={"name": "heuristic", "rate": 0.1})
"""

from .attention_unet import AttentionGate, AttentionUNet
from .base import SegmentationNet
from .blocks import ConvBlock, FusionConv
from .registry import available, build, get, options
from .unet import UNet
from .unet3plus import UNet3Plus

__all__ = [
    "AttentionGate", "AttentionUNet", "ConvBlock", "FusionConv", "SegmentationNet", "UNet",
    "UNet3Plus", "available", "build", "get", "options",
]
