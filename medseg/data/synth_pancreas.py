"""A Pancreas-CT–like synthetic dataset, written in the TCIA or MSD layout.

The phantom is not anatomy-accurate; it exists so the whole pipeline runs
offline and so that regularizers have something to fix. Each scan is an
abdominal cross-section stack (LPS: +x patient left = image right, +y
posterior = image bottom, +z superior) with

* a body ellipse: subcutaneous fat, an abdominal-wall muscle ring, visceral fat
  mixed with soft-tissue blobs (mesentery), psoas and paraspinal muscles;
* liver (upper slices, patient right), spleen (upper, left), kidneys (cortex
  and sinus), spine (cortical/cancellous vertebral bodies with discs), aorta
  with contrast, IVC, splenic vein;
* bowel loops filled with fluid, air, positive contrast or collapsed (soft
  tissue, close to the pancreas in intensity — the distractors);
* the target: a small, elongated, curved, lobulated tube (head → body → tail,
  rising towards the spleen) lying in a soft-tissue bed, only 35–60 HU brighter
  than the bed; it spans part of the slices, so many slices have no target.
  Every other scan (index 0, 2, …) carries a hypodense "tumour" (label 2 in the MSD layout).

Shape, size, position and intensity of the target, organ contrasts, a global
HU offset, a smooth bias field, blur (in-plane and along z) and noise
(σ 6–16 HU, slightly correlated) vary per scan, so a U-Net trained on eight
scans over-fits. Everything is drawn from ``numpy.random.default_rng`` seeded
by ``(seed, case)``; DICOM UIDs are derived from the seed and no timestamps are
written, so the same seed gives byte-identical files.

TCIA layout (datasets.md): ``Pancreas-CT/PANCREAS_0001/<study>/<series>/1-001.dcm``
with varying depth (every fourth patient from the second has an extra folder
level), file numbering reversed for some patients (1-001 is the top slice) and
unpadded for others (``1-10.dcm`` sorts before ``1-2.dcm``); labels
``TCIA_pancreas_labels-02-05-2017/labelNNNN.nii.gz``, some stored flipped along
z and some with x/y swapped (with geometry saying so) — see
:func:`label_storage`. DICOM: CT Image Storage, explicit VR little endian,
16-bit storage, RescaleSlope/RescaleIntercept varying per scan.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..errors import DataError
from ..io import atomic_dir, mark_folder, refuse_cwd_or_parent, refuse_strangers
from .geometry import Geometry

HU_MIN, HU_MAX = -1024.0, 3071.0
TCIA_IMAGES = "Pancreas-CT"
TCIA_LABELS = "TCIA_pancreas_labels-02-05-2017"
MARKER = "medseg_synth.json"
_UID_TAG = "medseg-synth-pancreas"

#: (RescaleSlope, RescaleIntercept, PixelRepresentation, BitsStored), by case index mod 3
RESCALE = ((1.0, -1024.0, 0, 12), (1.0, 0.0, 1, 16), (0.5, -1024.0, 0, 16))


@dataclass
class PancreasPhantom:
    """One generated scan, before it is written to disk.

    Attributes:
        number: patient number (1-based; ``PANCREAS_0001``).
        hu: (Z, Y, X) float32 HU in [-1024, 3071], z ascending (inferior → superior).
        label: (Z, Y, X) uint8: 0 background, 1 pancreas, 2 tumour.
        geometry: the image geometry (what the readers report).
        rescale: (slope, intercept, pixel_representation, bits_stored) of the DICOM.
    """

    number: int
    hu: np.ndarray
    label: np.ndarray
    geometry: Geometry
    rescale: tuple[float, float, int, int]


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), 0x9A7C, *key]))


def label_storage(index: int) -> str:
    """How case ``index`` (0-based) stores its TCIA label relative to the DICOM grid.

    ``"flip_z"`` (index 1, 5, 9, …): array reversed along z, z direction −1;
    ``"swap_xy"`` (index 3, 7, …): x and y axes exchanged; ``"same"`` otherwise.
    """
    return {1: "flip_z", 3: "swap_xy"}.get(index % 4, "same")


def _tcia_style(index: int) -> dict:
    """File-tree quirks of patient ``index``: extra folder depth and file naming."""
    return {
        "extra_level": index % 4 == 1,
        "reversed_names": index % 3 == 1,
        "unpadded_names": index % 5 == 2,
        "uid_folders": index % 2 == 0,
    }


# ----------------------------------------------------------------------------- fields
def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], cells: tuple[int, ...]) -> np.ndarray:
    """A smooth random field, ~N(0, 1), varying over about ``cells`` periods per axis."""
    coarse = rng.standard_normal(tuple(int(c) + 2 for c in cells))
    factors = [s / c for s, c in zip(shape, coarse.shape)]
    f = ndimage.zoom(coarse, factors, order=1, mode="nearest", grid_mode=True)
    f = f[tuple(slice(0, s) for s in shape)]
    if f.shape != tuple(shape):  # zoom rounding: pad by edge values
        f = np.pad(f, [(0, s - fs) for s, fs in zip(shape, f.shape)], mode="edge")
    return ((f - f.mean()) / (f.std() + 1e-6)).astype(np.float32)


def _ellipse(U, V, cu, cv, a, b):
    return ((U - cu) / a) ** 2 + ((V - cv) / b) ** 2 <= 1.0


def _catmull_rom(points: np.ndarray, n: int) -> np.ndarray:
    """``n`` points on the Catmull-Rom spline through ``points`` (k × d)."""
    p = np.vstack([2 * points[0] - points[1], points, 2 * points[-1] - points[-2]])
    segs = len(points) - 1
    out = []
    for t in np.linspace(0, segs, n):
        i = min(int(t), segs - 1)
        u = t - i
        p0, p1, p2, p3 = p[i], p[i + 1], p[i + 2], p[i + 3]
        out.append(0.5 * ((2 * p1) + (-p0 + p2) * u + (2 * p0 - 5 * p1 + 4 * p2 - p3) * u ** 2
                          + (-p0 + 3 * p1 - 3 * p2 + p3) * u ** 3))
    return np.asarray(out)


def _tube_distance(xs, ys, zs, curve, radius, scale, margin):
    """Signed distance (mm, <0 inside) to the union of ellipsoids along ``curve``.

    Computed only in the bounding box of the curve ± (radius + margin); the
    rest is +inf. ``scale`` = per-axis (x, y, z) stretch of the cross-section.
    """
    reach = float(radius.max() * max(scale) + margin)
    lo, hi = curve.min(axis=0) - reach, curve.max(axis=0) + reach
    ix = np.flatnonzero((xs >= lo[0]) & (xs <= hi[0]))
    iy = np.flatnonzero((ys >= lo[1]) & (ys <= hi[1]))
    iz = np.flatnonzero((zs >= lo[2]) & (zs <= hi[2]))
    out = np.full((len(zs), len(ys), len(xs)), np.inf, dtype=np.float32)
    if not (ix.size and iy.size and iz.size):
        return out
    X = xs[ix][None, None, :]
    Y = ys[iy][None, :, None]
    Z = zs[iz][:, None, None]
    best = np.full((iz.size, iy.size, ix.size), np.inf, dtype=np.float32)
    for (cx, cy, cz), r in zip(curve.astype(np.float32), radius):
        d = np.sqrt(((X - cx) / scale[0]) ** 2 + ((Y - cy) / scale[1]) ** 2
                    + ((Z - cz) / scale[2]) ** 2) - r
        np.minimum(best, d, out=best)
    out[np.ix_(iz, iy, ix)] = best
    return out


# ----------------------------------------------------------------------------- phantom
def pancreas_phantom(index: int, seed: int = 0, size: int = 128, slices: int = 48) -> PancreasPhantom:
    """Generate scan ``index`` (0-based; patient number ``index + 1``) of the set.

    Independent of the other cases: scan ``i`` is the same whatever ``cases`` is.
    """
    if size < 16 or slices < 2:
        raise DataError(f"synthetic scans need --size >= 16 and --slices >= 2 (got {size}, {slices})")
    rng = _rng(seed, index, size, slices)
    # --- acquisition geometry ------------------------------------------------------
    px = round(float(rng.uniform(320.0, 420.0)) / size, 4)            # mm per pixel
    coverage = float(rng.uniform(115.0, 150.0))                        # mm along z
    thick = round(coverage / slices, 3)
    coverage = thick * slices
    half = px * size / 2.0
    origin = (round(-(size - 1) / 2 * px + rng.uniform(-15, 15), 3),
              round(-(size - 1) / 2 * px + rng.uniform(-25, 5), 3),
              round(float(rng.uniform(-320.0, -120.0)), 3))
    geometry = Geometry(origin, (px, px, thick), (1, 0, 0, 0, 1, 0, 0, 0, 1), (size, size, slices))

    xs = ((np.arange(size) - (size - 1) / 2) * px).astype(np.float32)   # mm from centre
    ys = xs.copy()
    zs = ((np.arange(slices) + 0.5) * thick).astype(np.float32)          # mm from bottom
    U = (xs / half)[None, None, :]
    V = (ys / half)[None, :, None]
    T = (zs / coverage)[:, None, None]
    shape = (slices, size, size)
    j = lambda s: float(rng.uniform(-s, s))  # noqa: E731 - a jitter helper

    hu = np.full(shape, -1000.0, dtype=np.float32)
    # --- body, fat, muscle wall ------------------------------------------------------
    bu, bv = 0.82 + j(0.06), 0.60 + j(0.06)
    bcv = 0.04 + j(0.03)
    body = np.broadcast_to(_ellipse(U, V, 0.0, bcv, bu, bv), shape)
    fat_t = 0.05 + j(0.03)
    wall_t = 0.045 + j(0.01)
    inner = np.broadcast_to(_ellipse(U, V, 0.0, bcv, bu - fat_t, bv - fat_t), shape)
    cavity = np.broadcast_to(_ellipse(U, V, 0.0, bcv, bu - fat_t - wall_t, bv - fat_t - wall_t), shape)
    fat_hu = -100.0 + j(12)
    hu[body] = fat_hu
    hu[inner] = 50.0 + j(8)
    visceral = _smooth_field(rng, shape, (3, 6, 6))
    tissue_hu = 30.0 + j(10)
    hu[cavity] = np.where(visceral[cavity] > 0.55 + j(0.2), tissue_hu, fat_hu + 10.0)

    # --- muscles, spine ---------------------------------------------------------------
    muscle_hu = 50.0 + j(8)
    psoas_scale = 0.6 + 0.6 * (1.0 - T)  # psoas grows towards the pelvis
    for side in (-1, 1):
        hu[_ellipse(U, V, side * 0.17, 0.44, 0.07 * psoas_scale, 0.09 * psoas_scale) & cavity] = muscle_hu
        hu[np.broadcast_to(_ellipse(U, V, side * 0.15, 0.70 + bcv / 2, 0.12, 0.08), shape) & body] = muscle_hu
    sc = 0.52 + j(0.03)
    vr = 0.105 + j(0.015)
    period = float(rng.uniform(0.2, 0.28))
    disc = (np.mod(T + j(0.5), period) < 0.22 * period)
    vert = np.broadcast_to(_ellipse(U, V, 0.0, sc, vr, vr * 0.9), shape)
    cancellous = np.broadcast_to(_ellipse(U, V, 0.0, sc, vr * 0.8, vr * 0.72), shape)
    hu[vert] = 700.0 + j(150)
    hu[cancellous] = 220.0 + j(60)
    hu[vert & np.broadcast_to(disc, shape)] = 85.0 + j(10)
    hu[np.broadcast_to(_ellipse(U, V, 0.0, sc + vr + 0.09, 0.045, 0.09), shape) & body] = 450.0 + j(100)

    # --- solid organs -----------------------------------------------------------------
    liver_scale = np.sqrt(np.clip((T - 0.35 - j(0.08)) / 0.4, 0.0, 1.0))
    liver = _ellipse(U, V, -0.42 + j(0.05), -0.02 + j(0.05), 0.40 * liver_scale + 1e-6,
                     0.46 * liver_scale + 1e-6) & cavity
    hu[liver] = 110.0 + j(15) + 6.0 * visceral[liver]
    spleen_scale = np.sqrt(np.clip((T - 0.5 - j(0.08)) / 0.3, 0.0, 1.0))
    spleen = _ellipse(U, V, 0.56 + j(0.04), 0.26 + j(0.04), 0.14 * spleen_scale + 1e-6,
                      0.22 * spleen_scale + 1e-6) & cavity
    hu[spleen] = 115.0 + j(12)
    cortex_hu = 170.0 + j(25)
    for side in (-1, 1):
        kt, kh = 0.35 + j(0.06), 0.30 + j(0.05)
        ks = np.sqrt(np.clip(1.0 - ((T - kt) / kh) ** 2, 0.0, 1.0))
        cu, cv = side * (0.37 + j(0.03)), 0.36 + j(0.03)
        kid = _ellipse(U, V, cu, cv, 0.11 * ks + 1e-6, 0.16 * ks + 1e-6) & cavity
        sinus = _ellipse(U, V, cu - side * 0.03, cv, 0.045 * ks + 1e-6, 0.07 * ks + 1e-6) & kid
        hu[kid] = cortex_hu
        hu[sinus] = -40.0 + j(20)

    # --- bowel loops (distractors) -----------------------------------------------------
    for _ in range(int(rng.integers(6, 11))):
        cu, cv = float(rng.uniform(-0.45, 0.55)), float(rng.uniform(-0.45, 0.15))
        a, b = float(rng.uniform(0.05, 0.13)), float(rng.uniform(0.05, 0.11))
        tc, th = float(rng.uniform(0.0, 0.8)), float(rng.uniform(0.1, 0.35))
        s = np.sqrt(np.clip(1.0 - ((T - tc) / th) ** 2, 0.0, 1.0))
        outer = _ellipse(U, V, cu, cv, a * s + 1e-6, b * s + 1e-6) & cavity
        lumen = _ellipse(U, V, cu, cv, a * s * 0.75 + 1e-6, b * s * 0.75 + 1e-6) & cavity
        content = rng.choice(4, p=[0.35, 0.2, 0.15, 0.3])
        content_hu = (15.0 + j(10), -900.0 + j(50), 240.0 + j(60), 45.0 + j(12))[content]
        hu[outer] = 45.0 + j(8)
        hu[lumen] = content_hu

    # --- vessels ------------------------------------------------------------------------
    contrast = 170.0 + j(45)
    aorta_c = (0.07 + j(0.02), 0.31 + j(0.02))
    hu[np.broadcast_to(_ellipse(U, V, *aorta_c, 0.055, 0.055), shape) & cavity] = contrast
    hu[np.broadcast_to(_ellipse(U, V, -0.12 + j(0.02), 0.29 + j(0.02), 0.06, 0.05), shape)
       & cavity] = contrast - 40.0 + j(15)

    # --- pancreas: a curved lobulated tube in a soft-tissue bed --------------------------
    zc = coverage * float(rng.uniform(0.38, 0.6))
    rise = float(rng.uniform(8.0, 28.0))
    ctrl = np.array([
        [-55.0 + j(8), 28.0 + j(6), zc - rise / 2 - 4.0],
        [-18.0 + j(6), 8.0 + j(6), zc - rise / 4],
        [22.0 + j(8), 6.0 + j(8), zc + rise / 6],
        [70.0 + j(10), 42.0 + j(10), zc + rise / 2],
    ])
    curve = _catmull_rom(ctrl, 40)
    s = np.linspace(0.0, 1.0, len(curve))
    r_head, r_tail = float(rng.uniform(8.0, 12.0)), float(rng.uniform(4.5, 7.0))
    lobes = 1.0 + 0.12 * np.sin(2 * np.pi * (s * rng.uniform(3, 6) + rng.uniform()))
    radius = ((r_head + (r_tail - r_head) * s ** 0.7) * lobes).astype(np.float32)
    tail_len = float(rng.uniform(0.75, 1.0))  # some tails are shorter
    keep = s <= tail_len
    curve, radius = curve[keep], radius[keep]
    scale = (1.0, float(rng.uniform(0.75, 0.95)), float(rng.uniform(1.1, 1.5)))
    bed_margin = float(rng.uniform(5.0, 12.0))
    dist = _tube_distance(xs, ys, zs, curve.astype(np.float32), radius, scale, bed_margin + 3.0)
    bed_field = _smooth_field(rng, shape, (4, 8, 8))
    bed = (dist < bed_margin * np.clip(1.0 + 0.6 * bed_field, 0.2, 2.0)) & cavity
    pancreas = (dist < 0.0) & cavity
    bed_hu = tissue_hu + 10.0 + j(8)
    delta = float(rng.uniform(35.0, 60.0))
    hu[bed] = bed_hu
    texture = _smooth_field(rng, shape, (12, 40, 40))
    hu[pancreas] = bed_hu + delta + 6.0 * texture[pancreas]
    # splenic vein along the back of the body/tail
    vein = curve[len(curve) // 3:] + np.array([0.0, 1.0, 0.0]) * (radius[len(curve) // 3:, None] * scale[1] + 3.0)
    vdist = _tube_distance(xs, ys, zs, vein.astype(np.float32), np.full(len(vein), 3.0, np.float32),
                           (1.0, 1.0, 1.0), 0.0)
    hu[(vdist < 0) & cavity & ~pancreas] = contrast - 20.0
    label = pancreas.astype(np.uint8)
    # tumour in half of the scans: hypodense, label 2
    if index % 2 == 0 and len(curve) > 8:
        k = int(rng.integers(2, len(curve) * 2 // 3))
        tr = float(rng.uniform(0.6, 0.95)) * float(radius[k])
        tdist = _tube_distance(xs, ys, zs, curve[k:k + 1].astype(np.float32), np.array([tr], np.float32),
                               (1.0, 1.0, 1.0), 0.0)
        tumour = (tdist < 0) & pancreas
        hu[tumour] -= float(rng.uniform(20.0, 40.0))
        label[tumour] = 2

    # --- acquisition: offset, bias field, blur, noise --------------------------------------
    tissue = hu > -950.0
    hu[tissue] += j(20) + 8.0 * _smooth_field(rng, shape, (2, 3, 3))[tissue]
    sigma_xy = float(rng.uniform(0.4, 1.2))
    hu = ndimage.gaussian_filter(hu, (float(rng.uniform(0.3, 0.8)), sigma_xy, sigma_xy), mode="nearest")
    noise_sigma = float(rng.uniform(6.0, 16.0))
    noise = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), (0.0, 0.6, 0.6))
    noise *= noise_sigma / (float(noise.std()) + 1e-6)
    hu += noise
    np.clip(hu, HU_MIN, HU_MAX, out=hu)
    return PancreasPhantom(number=index + 1, hu=hu.astype(np.float32), label=label,
                           geometry=geometry, rescale=RESCALE[index % 3])


# ----------------------------------------------------------------------------- writers
def _uid(seed: int, *parts) -> str:
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=[_UID_TAG, str(seed), *map(str, parts)]))


def _ds(v: float) -> str:
    """A DICOM decimal string (≤ 16 characters) of ``v``."""
    s = f"{v:.6f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def stored_values(hu: np.ndarray, rescale: tuple[float, float, int, int]) -> np.ndarray:
    """HU → stored integers: round((HU − intercept) / slope), in the storage type."""
    slope, intercept, signed, bits = rescale
    raw = np.rint((hu.astype(np.float64) - intercept) / slope)
    lo, hi = ((-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1))
    return np.clip(raw, lo, hi).astype(np.int16 if signed else np.uint16)


def write_dicom_series(ph: PancreasPhantom, folder: Path, seed: int, size_key: tuple[int, int],
                       reversed_names: bool, unpadded_names: bool) -> list[Path]:
    """Write the phantom as a CT Image Storage series, one file per slice."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    folder.mkdir(parents=True, exist_ok=True)
    g = ph.geometry
    slope, intercept, signed, bits = ph.rescale
    stored = stored_values(ph.hu, ph.rescale)
    n = stored.shape[0]
    key = (ph.number, *size_key)
    study, series = _uid(seed, *key, "study"), _uid(seed, *key, "series")
    frame = _uid(seed, *key, "frame")
    pid = f"PANCREAS_{ph.number:04d}"
    paths = []
    for k in range(n):
        number = n - k if reversed_names else k + 1  # InstanceNumber follows the file name
        name = f"1-{number}.dcm" if unpadded_names else f"1-{number:03d}.dcm"
        sop = _uid(seed, *key, "sop", k)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(name, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.FrameOfReferenceUID = frame
        ds.PatientID = pid
        ds.PatientName = pid
        ds.Modality = "CT"
        ds.Manufacturer = "medseg synthetic phantom"
        ds.StudyDescription = "Pancreas-CT-like phantom"
        ds.SeriesDescription = "Pancreas"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.BodyPartExamined = "PANCREAS"
        ds.KVP = "120"
        ds.StudyID = str(ph.number)
        ds.SeriesNumber = 1
        ds.InstanceNumber = number
        z = g.origin[2] + k * g.spacing[2]
        ds.ImagePositionPatient = [_ds(g.origin[0]), _ds(g.origin[1]), _ds(z)]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.SliceLocation = _ds(z)
        ds.PixelSpacing = [_ds(g.spacing[1]), _ds(g.spacing[0])]  # row, column spacing
        ds.SliceThickness = _ds(g.spacing[2])
        ds.Rows, ds.Columns = int(stored.shape[1]), int(stored.shape[2])
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = bits
        ds.HighBit = bits - 1
        ds.PixelRepresentation = signed
        ds.RescaleIntercept = _ds(intercept)
        ds.RescaleSlope = _ds(slope)
        ds.RescaleType = "HU"
        ds.WindowCenter = "40"
        ds.WindowWidth = "400"
        ds.PixelData = np.ascontiguousarray(stored[k]).astype("<u2" if not signed else "<i2").tobytes()
        path = folder / name
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def stored_label(ph: PancreasPhantom, storage: str, values: np.ndarray | None = None):
    """(array, geometry) of the label as stored on disk for ``storage`` (see :func:`label_storage`)."""
    lab = ph.label if values is None else values
    g = ph.geometry
    if storage == "same":
        return lab, g
    d = g.matrix
    if storage == "flip_z":
        origin = tuple(g.index_to_physical((0, 0, g.size[2] - 1)))
        d2 = d.copy()
        d2[:, 2] *= -1
        return lab[::-1].copy(), Geometry(origin, g.spacing, tuple(d2.ravel()), g.size)
    if storage == "swap_xy":
        d2 = d[:, [1, 0, 2]]
        return (np.ascontiguousarray(lab.transpose(0, 2, 1)),
                Geometry(g.origin, (g.spacing[1], g.spacing[0], g.spacing[2]), tuple(d2.ravel()),
                         (g.size[1], g.size[0], g.size[2])))
    raise ValueError(storage)


def _write_nifti(array: np.ndarray, geometry: Geometry, path: Path) -> None:
    import SimpleITK as sitk

    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(geometry.to_sitk(array), str(path), useCompression=True)


def _study_folders(ph: PancreasPhantom, seed: int, size_key, style: dict, rng) -> list[str]:
    key = (ph.number, *size_key)
    if style["uid_folders"]:
        parts = [_uid(seed, *key, "study"), _uid(seed, *key, "series")]
    else:
        accession = int(rng.integers(10000, 99999))
        month, day = int(rng.integers(1, 13)), int(rng.integers(1, 29))
        parts = [f"{month:02d}-{day:02d}-2015-PANCREAS{ph.number:04d}-Pancreas-{accession}",
                 f"Pancreas-{accession + 1}"]
    if style["extra_level"]:
        parts.insert(1, "1.000000-NA")
    return parts


#: what a synth folder holds (both layouts, both datasets): --force replaces nothing else
SYNTH_ENTRIES = (MARKER, "Pancreas-CT", "TCIA_pancreas_labels-*", "imagesTr", "labelsTr", "dataset.json",
                 "training", "test")


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise DataError(f"{out}: folder exists and is not empty; pass --force to replace it")
        if not (out / MARKER).is_file():
            raise DataError(f"{out}: not written by 'medseg data synth' (no {MARKER}); "
                            f"refusing to replace it even with --force — remove it yourself")
        refuse_cwd_or_parent(out)
        refuse_strangers(out, "synthetic dataset", SYNTH_ENTRIES)


def synth_pancreas(out: str | os.PathLike = "data/synthetic/pancreas", layout: str = "tcia",
                   cases: int = 12, size: int = 128, slices: int = 48, seed: int = 0, *,
                   force: bool = False, progress: bool = False) -> Path:
    """Write ``cases`` phantom scans under ``out`` in the TCIA or MSD layout.

    The folder is built under a temporary name and renamed when complete, so an
    interrupted run leaves nothing behind. An existing non-empty ``out`` is
    replaced only with ``force`` and only if an earlier synth wrote it.
    """
    from tqdm import tqdm

    out = Path(out)
    if layout not in ("tcia", "msd"):
        raise DataError(f"unknown layout '{layout}' (tcia or msd)")
    if cases < 1:
        raise DataError(f"--cases must be at least 1 (got {cases})")
    _check_out(out, force)
    size_key = (size, slices)
    with atomic_dir(out) as tmp:
        training = []
        for i in tqdm(range(cases), desc="synth pancreas", unit="case", disable=None if progress else True):
            ph = pancreas_phantom(i, seed=seed, size=size, slices=slices)
            if layout == "tcia":
                style = _tcia_style(i)
                rng = _rng(seed, i, 1)
                folder = tmp / TCIA_IMAGES / f"PANCREAS_{ph.number:04d}"
                folder = folder.joinpath(*_study_folders(ph, seed, size_key, style, rng))
                write_dicom_series(ph, folder, seed, size_key, style["reversed_names"], style["unpadded_names"])
                arr, geom = stored_label(ph, label_storage(i), (ph.label > 0).astype(np.uint8))
                _write_nifti(arr, geom, tmp / TCIA_LABELS / f"label{ph.number:04d}.nii.gz")
            else:
                name = f"pancreas_{ph.number:03d}.nii.gz"
                img = np.rint(ph.hu).astype(np.int16)
                _write_nifti(img, ph.geometry, tmp / "imagesTr" / name)
                _write_nifti(ph.label, ph.geometry, tmp / "labelsTr" / name)
                training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
        if layout == "msd":
            dataset = {
                "name": "Pancreas",
                "description": "Synthetic Pancreas-CT-like phantom (medseg), MSD Task07 layout",
                "reference": "medseg synthetic generator",
                "licence": "CC-BY-SA 4.0",
                "release": "1.0",
                "tensorImageSize": "3D",
                "modality": {"0": "CT"},
                "labels": {"0": "background", "1": "pancreas", "2": "cancer"},
                "numTraining": len(training),
                "numTest": 0,
                "training": training,
                "test": [],
            }
            (tmp / "dataset.json").write_text(json.dumps(dataset, indent=4) + "\n")
        params = {"dataset": "pancreas", "layout": layout, "cases": cases, "size": size,
                  "slices": slices, "seed": seed}
        (tmp / MARKER).write_text(json.dumps(params, indent=1, sort_keys=True) + "\n")
        mark_folder(tmp, "synth")
    return out
