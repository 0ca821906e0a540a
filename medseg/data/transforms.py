"""MONAI transforms applied to cached slices.

Training set only (``data.augment``): mirroring along each of ``data.mirror_axes``
(default x, the slice width: a horizontal flip) with probability 0.5, small rotation
(±10°) and scaling (±10 %), intensity scale (±10 %) and shift (±0.05) — MONAI dictionary
transforms on ``image`` (C, H, W) and ``label`` (1, H, W); the label is resampled
with nearest neighbour. Validation and test are never augmented.
"""

from __future__ import annotations

import math

import torch
from monai.transforms import (
    Compose,
    EnsureTyped,
    RandAffined,
    RandFlipd,
    RandScaleIntensityd,
    RandShiftIntensityd,
)

KEYS = ("image", "label")
#: in-plane axis name → spatial axis of a (C, H, W) slice (x: width, y: height)
SPATIAL_AXIS = {"x": 1, "y": 0}


def mirror_axes_trained(data_cfg) -> list[str]:
    """The axes a run's training mirrored: ``data.mirror_axes``, none without augmentation."""
    return list(data_cfg.get("mirror_axes", ["x"])) if data_cfg.get("augment", True) else []


def train_transforms(augment: bool = True, mirror_axes=("x",)) -> Compose:
    """The training pipeline; identity apart from typing when ``augment`` is False."""
    steps = []
    if augment:
        steps += [RandFlipd(keys=KEYS, prob=0.5, spatial_axis=SPATIAL_AXIS[a]) for a in mirror_axes]
        steps += [
            RandAffined(keys=KEYS, prob=0.5, rotate_range=(math.radians(10),),
                        scale_range=(0.1, 0.1), mode=("bilinear", "nearest"),
                        padding_mode="zeros"),
            RandScaleIntensityd(keys="image", factors=0.1, prob=0.5),
            RandShiftIntensityd(keys="image", offsets=0.05, prob=0.5),
        ]
    steps.append(EnsureTyped(keys=KEYS, data_type="tensor", dtype=(torch.float32, torch.float32),
                             track_meta=False))
    return Compose(steps)
