"""One BAGLS frame: image, glottis mask and recording metadata.

BAGLS (Gómez et al., "BAGLS, a multihospital Benchmark for Automatic Glottis
Segmentation", Sci. Data 7:186, 2020) stores each frame ``N`` as three files:
``N.png`` (grayscale or RGB, resolution depends on the camera), ``N_seg.png``
(glottal area > 0, i.e. 0/255) and ``N.meta`` (JSON). Closed-glottis frames
have an empty mask and are kept. Images are returned as stored; the mask is
binarised as ``mask = (N_seg > 0)``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError


@dataclass
class BaglsFrame:
    """A frame as stored.

    Attributes:
        frame_id: ``"<folder>/<N>"``, e.g. ``"training/12"``.
        image: (H, W) or (H, W, 3) uint8.
        mask: (H, W) uint8 in {0, 1}, or None when not required and absent.
        meta: the parsed ``N.meta`` JSON, or None when absent.
    """

    frame_id: str
    image: np.ndarray
    mask: np.ndarray | None
    meta: dict | None

    def __repr__(self) -> str:
        mask = None if self.mask is None else f"{self.mask.shape}, {int(self.mask.sum())} px"
        return f"BaglsFrame({self.frame_id!r}, image={self.image.shape}, mask={mask})"


def mask_path_for(png_path: str | os.PathLike) -> Path:
    """``N.png`` → ``N_seg.png``."""
    p = Path(png_path)
    return p.with_name(f"{p.stem}_seg.png")


def meta_path_for(png_path: str | os.PathLike) -> Path:
    """``N.png`` → ``N.meta``."""
    p = Path(png_path)
    return p.with_name(f"{p.stem}.meta")


def read_frame_image(path: str | os.PathLike) -> np.ndarray:
    """A PNG/JPEG frame as (H, W) or (H, W, 3) uint8 (16-bit grayscale stays uint16).

    Palette images are expanded to RGB, an alpha channel is dropped,
    1-bit images become 0/255.
    """
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: image file not found")
    try:
        with Image.open(p) as im:
            im.load()
            mode = im.mode
            if mode in ("1", "LA"):
                im = im.convert("L")
            elif mode in ("P", "PA", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
                im = im.convert("RGB")
            elif mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im)
                if arr.max(initial=0) > 65535 or arr.min(initial=0) < 0:
                    raise DataError(f"{p}: unsupported {mode} pixel range")
                return arr.astype(np.uint16)
            arr = np.asarray(im)
    except DataError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{p}: unreadable or truncated image file ({str(exc).splitlines()[0][:100]})") from None
    if arr.dtype != np.uint8 and arr.dtype != np.uint16:
        arr = arr.astype(np.uint8)
    return np.ascontiguousarray(arr)


def read_meta(path: str | os.PathLike) -> dict | None:
    """The JSON metadata file, or None if absent."""
    p = Path(path)
    if not p.exists():
        return None
    try:
        meta = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{p}: unreadable metadata (not valid JSON: {str(exc)[:80]})") from None
    if not isinstance(meta, dict):
        raise DataError(f"{p}: metadata is not a JSON object")
    return meta


def load_bagls_frame(png_path: str | os.PathLike, *, require_mask: bool = True) -> BaglsFrame:
    """Read ``N.png``, ``N_seg.png`` (→ {0, 1}) and ``N.meta`` if present.

    Raises:
        DataError: a missing file (the mask only when ``require_mask``), an
            unreadable image, a mask whose size differs from the image.
    """
    p = Path(png_path)
    image = read_frame_image(p)
    mpath = mask_path_for(p)
    mask = None
    if mpath.exists():
        raw = read_frame_image(mpath)
        if raw.shape[:2] != image.shape[:2]:
            raise DataError(f"{mpath}: mask is {raw.shape[1]}×{raw.shape[0]} (W×H) but its image "
                            f"{p.name} is {image.shape[1]}×{image.shape[0]}")
        if raw.ndim == 3:
            raw = raw.max(axis=2)
        mask = (raw > 0).astype(np.uint8)
    elif require_mask:
        raise DataError(f"{mpath}: mask file not found (frame {p.name})")
    meta = read_meta(meta_path_for(p))
    return BaglsFrame(frame_id=f"{p.parent.name}/{p.stem}", image=image, mask=mask, meta=meta)
