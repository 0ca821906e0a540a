"""A BAGLS-like synthetic dataset: endoscopic glottis frames with masks and metadata.

Layout as BAGLS (Gómez et al., Sci. Data 7:186, 2020): ``training/`` and
``test/``, each frame ``N`` (from 0) as ``N.png``, ``N_seg.png`` (0/255) and
``N.meta`` (JSON). A frame shows, in a portrait field of view like the real
high-speed videoendoscopy frames:

* tissue-coloured mucosa with a smooth texture, darkened by vignetting;
* two vocal folds (pale bands) along a tilted glottal axis, arytenoid bumps at
  the posterior end;
* between them the dark glottal gap — a spindle whose opening follows the
  vibration phase and is fully closed (empty mask) in about a fifth of the
  frames;
* specular highlights, blur and sensor noise.

Frames come from "subjects" recorded at one of four "hospitals", which differ
in resolution (H×W 256×128, 320×160, 288×144, 240×160), colour response and
grayscale vs RGB storage. Subject anatomy (fold length, tilt, position,
colour) is shared by the subject's frames. Everything is drawn from
``numpy.random.default_rng`` seeded by ``(seed, split, frame)`` — the same seed
gives byte-identical files. A frame is built in three steps, each drawing from
the frame's generator in turn: :func:`_glottis` (where the glottis is and how
far it is open), :func:`_paint_larynx` (tissue colours), :func:`_camera`
(highlights, vignetting, blur, noise, storage). Keep the draws in their order:
``tests/data/test_synth.py`` pins the generated frames.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..errors import DataError
from ..io import atomic_dir, mark_folder
from .synth_pancreas import MARKER, _check_out

#: name, (H, W), colour, device, base tissue RGB (0–1)
HOSPITALS = (
    ("H1", (256, 128), True, "Photron FASTCAM MC2 (synthetic)", (0.85, 0.45, 0.40)),
    ("H2", (320, 160), False, "KayPENTAX HSV 9710 (synthetic)", (0.75, 0.50, 0.45)),
    ("H3", (288, 144), True, "Wolf HRES Endocam (synthetic)", (0.90, 0.55, 0.35)),
    ("H4", (240, 160), False, "Photron FASTCAM SA1.1 (synthetic)", (0.80, 0.40, 0.40)),
)
_SPLIT_CODE = {"training": 0, "test": 1}
_STATUS = ("healthy", "healthy", "functional dysphonia", "vocal fold nodules", "paresis")
FRAMES_PER_SUBJECT = 10
POSITION_JITTER = 0.03          # per-frame glottis shift, fraction of W (x) and H (y)
TILT_JITTER = 0.05              # radians
PHASE_JITTER = 0.05             # vibration cycles
GAP_POSTERIOR_WIDENING = 0.35   # the gap is (1 ± 0.35) wider at the posterior / anterior end
TEXTURE_CELLS = (6, 4)          # mucosa texture: coarse noise grid (rows, columns) zoomed to the frame
FOLD_RGB = (0.95, 0.85, 0.80)   # vocal folds, before the subject's tint
GAP_RGB = (0.10, 0.03, 0.03)    # glottal gap, up to 1.5 × brighter
GAMMA = 1.2
GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma, for the gray hospitals


@dataclass
class SynthFrame:
    """A generated frame: ``image`` (H, W) or (H, W, 3) uint8, ``mask`` (H, W) {0, 1}, ``meta``."""

    image: np.ndarray
    mask: np.ndarray
    meta: dict


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), 0xBA915, *key]))


def _subject(seed: int, split: str, subject: int) -> dict:
    r = _rng(seed, _SPLIT_CODE[split], 1_000_000 + subject)
    h = int(r.integers(len(HOSPITALS)))
    return {
        "hospital": h,
        "length": float(r.uniform(0.42, 0.6)),       # glottis length / H
        "tilt": float(r.uniform(-0.3, 0.3)),          # radians
        "cx": float(r.uniform(0.42, 0.58)),
        "cy": float(r.uniform(0.42, 0.58)),
        "fold_width": float(r.uniform(0.07, 0.12)),   # / W
        "max_open": float(r.uniform(0.06, 0.14)),     # gap half-width / W at full opening
        "tint": r.uniform(0.9, 1.1, size=3),
        "status": _STATUS[int(r.integers(len(_STATUS)))],
        "age": int(r.integers(18, 80)),
        "sex": "f" if r.uniform() < 0.5 else "m",
        "phase0": float(r.uniform()),
        "freq": float(r.uniform(0.08, 0.2)),          # cycles per frame index
    }


@dataclass(eq=False)
class _Glottis:
    """Where the glottis is in one frame, in glottal coordinates (all (H, W) arrays)."""

    s: np.ndarray           # along the glottal axis: −1 anterior … +1 posterior
    w: np.ndarray           # across it, pixels
    gap: np.ndarray         # half-width of the opening at each s (0 when closed)
    inside: np.ndarray      # |s| < 1

    @property
    def mask(self) -> np.ndarray:
        return (self.inside & (np.abs(self.w) < self.gap)).astype(np.uint8)

    @property
    def dark(self) -> np.ndarray:
        """The painted gap: half a pixel wider than the mask so that blur keeps it visible."""
        return self.inside & (np.abs(self.w) < np.where(self.gap > 0, self.gap + 0.5, 0.0))


def _glottis(subj: dict, index: int, H: int, W: int, yy: np.ndarray, xx: np.ndarray,
             r: np.random.Generator) -> _Glottis:
    """Place the subject's glottis in the frame (small per-frame jitter) and open it by the phase.

    The jitters stay numpy floats, so the glottal coordinates are float64.
    """
    cx = subj["cx"] * W + r.uniform(-POSITION_JITTER, POSITION_JITTER) * W
    cy = subj["cy"] * H + r.uniform(-POSITION_JITTER, POSITION_JITTER) * H
    tilt = subj["tilt"] + r.uniform(-TILT_JITTER, TILT_JITTER)
    half_len = subj["length"] * H / 2
    dx, dy = xx - cx, yy - cy
    s = (dx * np.sin(tilt) + dy * np.cos(tilt)) / half_len
    w = dx * np.cos(tilt) - dy * np.sin(tilt)
    # vibration phase: closed whenever sin(·) < -0.75 (≈ 23 % of the cycle)
    cycles = subj["freq"] * (index % FRAMES_PER_SUBJECT)
    phase = subj["phase0"] + cycles + r.uniform(-PHASE_JITTER, PHASE_JITTER)
    opening = float(np.clip(np.sin(2 * np.pi * phase) + 0.75, 0.0, 1.75) / 1.75)
    gap = subj["max_open"] * W * opening * np.clip(1 - s ** 2, 0, None) * (1 + GAP_POSTERIOR_WIDENING * s)
    if float(gap.max(initial=0.0)) < 1.0:  # a sliver narrower than two pixels counts as closed
        gap = np.zeros_like(gap)
    return _Glottis(s, w, gap, np.abs(s) < 1)


def _paint_larynx(subj: dict, base, g: _Glottis, H: int, W: int, r: np.random.Generator) -> np.ndarray:
    """Mucosa with a smooth texture, the vocal folds, the arytenoids and the dark gap (RGB, 0..1)."""
    tint = np.asarray(base) * subj["tint"]
    tex = ndimage.zoom(r.standard_normal(TEXTURE_CELLS), (H / TEXTURE_CELLS[0], W / TEXTURE_CELLS[1]),
                       order=1, grid_mode=True, mode="nearest")
    tex = tex[:H, :W]
    tex = np.pad(tex, ((0, H - tex.shape[0]), (0, W - tex.shape[1])), mode="edge")
    img = np.ones((H, W, 3), np.float32) * tint * (0.75 + 0.08 * tex[..., None])
    s, w, gap, dark = g.s, g.w, g.gap, g.dark
    fold_w = subj["fold_width"] * W
    fold = g.inside & ~dark & (np.abs(w) < gap + fold_w * np.sqrt(np.clip(1 - s ** 2, 0, None)) + 1)
    fold_col = np.array(FOLD_RGB, np.float32) * (0.9 + 0.1 * subj["tint"])
    shade = 0.85 + 0.15 * np.clip(1 - np.abs(w[fold]) / (gap[fold] + fold_w + 1), 0, 1)  # paler at the edge
    img[fold] = fold_col * shade[:, None]
    for side in (-1, 1):  # arytenoids: two bumps at the posterior end
        ay = (s - 1.15) ** 2 / 0.04 + (w - side * fold_w * 0.9) ** 2 / (fold_w * 0.8) ** 2 < 1
        img[ay] = tint * 1.05
    img[dark] = np.array(GAP_RGB, np.float32) * (1 + 0.5 * r.uniform())  # faint subglottal red
    return img


def _camera(img: np.ndarray, dark: np.ndarray, colour: bool, yy: np.ndarray, xx: np.ndarray,
            r: np.random.Generator) -> np.ndarray:
    """Specular highlights, vignetting, blur, noise, gamma; uint8 RGB or gray."""
    H, W = dark.shape
    for _ in range(int(r.integers(1, 5))):  # highlights on the folds
        hy, hx = r.uniform(0.2, 0.8) * H, r.uniform(0.25, 0.75) * W
        rad = r.uniform(1.0, 3.5)
        spot = (yy - hy) ** 2 + (xx - hx) ** 2 < rad ** 2
        img[spot & ~dark] = 1.0
    rr = np.sqrt(((xx - W / 2) / (W / 2)) ** 2 + ((yy - H / 2) / (H / 2)) ** 2)
    img *= np.clip(1.0 - r.uniform(0.45, 0.8) * rr ** 2, 0.05, 1.0)[..., None]
    sigma = float(r.uniform(0.4, 1.6))
    img = ndimage.gaussian_filter(img, (sigma, sigma, 0))
    img += r.normal(0.0, r.uniform(0.01, 0.03), img.shape).astype(np.float32)
    img = np.clip(img, 0, 1) ** (1 / GAMMA)
    if colour:
        return np.rint(img * 255).astype(np.uint8)
    return np.rint((img @ np.array(GRAY_WEIGHTS, np.float32)) * 255).astype(np.uint8)


def bagls_frame(index: int, split: str = "training", seed: int = 0) -> SynthFrame:
    """Generate frame ``index`` of ``split`` (independent of the other frames' count)."""
    subj_id = index // FRAMES_PER_SUBJECT
    subj = _subject(seed, split, subj_id)
    name, (H, W), colour, device, base = HOSPITALS[subj["hospital"]]
    r = _rng(seed, _SPLIT_CODE[split], index)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    glottis = _glottis(subj, index, H, W, yy, xx, r)
    mask = glottis.mask
    image = _camera(_paint_larynx(subj, base, glottis, H, W, r), glottis.dark, colour, yy, xx, r)
    meta = {
        "subject": f"{split[:2]}{subj_id:04d}",
        "hospital": name,
        "device": device,
        "status": subj["status"],
        "age": subj["age"],
        "sex": subj["sex"],
        "image_type": "color" if colour else "gray",
        "width": W,
        "height": H,
        "video_frame": index % FRAMES_PER_SUBJECT,
        "glottis_closed": bool(mask.sum() == 0),
        "synthetic": True,
    }
    return SynthFrame(image=image, mask=mask, meta=meta)


def _png_bytes(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def synth_bagls(out: str | os.PathLike = "data/synthetic/bagls", frames: int = 400, test_frames: int = 100,
                seed: int = 0, *, force: bool = False, progress: bool = False) -> Path:
    """Write ``frames`` training and ``test_frames`` test frames under ``out`` (BAGLS layout).

    Built under a temporary name and renamed when complete. Test subjects are
    disjoint from training subjects (different seeds stream).
    """
    from tqdm import tqdm

    out = Path(out)
    if frames < 0 or test_frames < 0 or frames + test_frames == 0:
        raise DataError(f"--frames and --test-frames must be >= 0 and not both 0 "
                        f"(got {frames}, {test_frames})")
    _check_out(out, force)
    jobs = [("training", i) for i in range(frames)] + [("test", i) for i in range(test_frames)]
    with atomic_dir(out) as tmp:
        for split in ("training", "test"):
            (tmp / split).mkdir()
        for split, i in tqdm(jobs, desc="synth bagls", unit="frame", disable=None if progress else True):
            fr = bagls_frame(i, split, seed)
            folder = tmp / split
            (folder / f"{i}.png").write_bytes(_png_bytes(fr.image))
            (folder / f"{i}_seg.png").write_bytes(_png_bytes(fr.mask * 255))
            (folder / f"{i}.meta").write_text(json.dumps(fr.meta, indent=1) + "\n")
        params = {"dataset": "bagls", "frames": frames, "test_frames": test_frames, "seed": seed}
        (tmp / MARKER).write_text(json.dumps(params, indent=1, sort_keys=True) + "\n")
        mark_folder(tmp, "synth")
    return out
