"""Preprocessing shared by the slice cache, training and ``medseg predict``.

One function per step so that prediction applies exactly what training did
(the checkpoint stores the parameters: window, size, channels):

* CT: clip to the HU window and scale to [0, 1] (MONAI ``ScaleIntensityRange``),
  resize every axial slice to ``size`` (MONAI ``Resize``, bilinear with
  anti-aliasing); labels resized with nearest neighbour.
* Frames: to the configured channel count (ITU-R BT.601 luma for grayscale),
  scale to [0, 1], resize like CT slices.
* Back to the native grid: class probabilities are resized bilinearly to the
  scan's own slice size, then arg-maxed (:func:`probabilities_to_native_mask`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import Resize, ScaleIntensityRange

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _resize(array: np.ndarray | torch.Tensor, size: Sequence[int], mode: str) -> torch.Tensor:
    """Resize a channel-first (C, Y, X) array over its last two axes."""
    size = (int(size[0]), int(size[1]))
    t = torch.as_tensor(array)
    if tuple(t.shape[-2:]) == size:
        return t
    if mode == "nearest":
        resize = Resize(spatial_size=size, mode="nearest-exact")
    else:
        resize = Resize(spatial_size=size, mode="bilinear", anti_aliasing=True)
    out = resize(t)
    return torch.as_tensor(out.as_tensor() if hasattr(out, "as_tensor") else out)


def window_ct(hu: np.ndarray | torch.Tensor, window: Sequence[float]) -> torch.Tensor:
    """Clip HU to ``window`` = [low, high] and map linearly to [0, 1]."""
    scale = ScaleIntensityRange(a_min=float(window[0]), a_max=float(window[1]),
                                b_min=0.0, b_max=1.0, clip=True, dtype=torch.float32)
    out = scale(torch.as_tensor(hu, dtype=torch.float32))
    return torch.as_tensor(out.as_tensor() if hasattr(out, "as_tensor") else out)


def preprocess_ct(hu: np.ndarray | torch.Tensor, window: Sequence[float],
                  size: Sequence[int]) -> torch.Tensor:
    """(Z, Y, X) HU volume → (Z, 1, H, W) float32 network input in [0, 1]."""
    x = window_ct(hu, window)  # (Z, Y, X): Z acts as the channel axis of Resize
    x = _resize(x, size, "bilinear").clamp_(0.0, 1.0)
    return x.unsqueeze(1).contiguous()


def resize_label(label: np.ndarray | torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """(Z, Y, X) or (Y, X) integer mask → resized with nearest neighbour, uint8."""
    t = torch.as_tensor(np.asarray(label), dtype=torch.float32)
    squeeze = t.ndim == 2
    if squeeze:
        t = t[None]
    out = _resize(t, size, "nearest").round().to(torch.uint8)
    return out[0] if squeeze else out


def frame_to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """(H, W) or (H, W, 3[+alpha]) uint8 frame → (channels, H, W) float32 in [0, 1]."""
    img = np.asarray(image)
    if img.ndim == 3:
        img = img[..., :3]
    img = img.astype(np.float32) / (65535.0 if img.dtype == np.uint16 else 255.0)
    if channels == 1:
        gray = img @ _LUMA if img.ndim == 3 else img
        return gray[None]
    if img.ndim == 2:
        return np.repeat(img[None], 3, axis=0)
    return np.moveaxis(img, -1, 0).copy()


def preprocess_frame(image: np.ndarray, channels: int, size: Sequence[int]) -> torch.Tensor:
    """(H, W[, 3]) uint8 frame → (channels, H', W') float32 network input in [0, 1]."""
    x = torch.from_numpy(frame_to_channels(image, channels))
    return _resize(x, size, "bilinear").clamp_(0.0, 1.0).contiguous()


def as_cached(x: torch.Tensor) -> torch.Tensor:
    """Round network inputs to float16 and back, exactly as the slice cache stores them.

    Training and evaluation read float16 cache entries (:mod:`medseg.data.cache`);
    ``medseg predict`` applies this so its masks are bit-identical to evaluation's.
    """
    return x.to(torch.float16).to(torch.float32)


def probabilities_to_native_mask(probs: torch.Tensor, native_hw: Sequence[int]) -> torch.Tensor:
    """(N, K, H, W) class probabilities → (N, Y, X) uint8 arg-max mask on the native grid."""
    native_hw = (int(native_hw[0]), int(native_hw[1]))
    if tuple(probs.shape[-2:]) != native_hw:
        probs = F.interpolate(probs.float(), size=native_hw, mode="bilinear", align_corners=False)
    # max(dim).indices is argmax (first maximum on ties) but ~50× faster on CPU for
    # (N, K, H, W): argmax reduces the strided class dim slowly (140 vs 2.5 ms, 48×2×128²)
    return probs.max(dim=1).indices.to(torch.uint8)


@torch.no_grad()
def predict_slices(model: torch.nn.Module, slices: torch.Tensor, native_hw: Sequence[int],
                   batch_size: int = 32) -> torch.Tensor:
    """Run ``model`` over (N, C, H, W) slices in chunks; return the (N, Y, X) native mask.

    The same function serves validation, test, ``medseg evaluate`` and
    ``medseg predict``, so their masks are identical for the same checkpoint.
    """
    device = next(model.parameters()).device
    masks = []
    for start in range(0, slices.shape[0], batch_size):
        x = slices[start:start + batch_size].to(device, non_blocking=True)
        logits = model(x)
        if isinstance(logits, (list, tuple)):
            logits = logits[0]
        probs = torch.softmax(logits.float(), dim=1)
        masks.append(probabilities_to_native_mask(probs, native_hw).cpu())
    return torch.cat(masks, dim=0)
