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
by ``(seed, case)``; DICOM UIDs are derived from the seed and the study date and
time are fixed (:data:`STUDY_DATE`), so the same seed gives byte-identical files.
The headers carry every type 1 and type 2 attribute of the CT Image IOD
(``dciodvfy`` from dicom3tools reports no error), so a DICOM SEG made from a
synthetic scan inherits valid patient and study modules.

How a scan is painted
---------------------
:func:`pancreas_phantom` fills an air volume and paints the parts in a fixed
order, each overwriting what it covers: body (:data:`BODY`), muscles
(:data:`MUSCLES`), spine (:data:`SPINE`), liver and spleen (:data:`LIVER`,
:data:`SPLEEN`), kidneys (:data:`KIDNEYS`), bowel (:data:`BOWEL`), vessels
(:data:`VESSELS`), pancreas with its bed and the splenic vein
(:data:`PANCREAS`), tumour (:data:`TUMOUR`); then the scanner (:data:`SCANNER`)
adds offset, bias, blur and noise. Every part is a frozen dataclass of named
quantities. A quantity that varies per scan is an :class:`Around`
(``nominal ± spread``) or a :class:`Between` (``[lo, hi)``), drawn once per scan.

Units: intensities in HU. In-plane positions and sizes of the body and its
organs are *normalised* — fractions of half the field of view, ``u`` to the
image right (patient left) and ``v`` to the image bottom (posterior), (0, 0)
at the image centre; heights are fractions ``t`` of the z coverage (0 at the
bottom of the stack, 1 at the top). The pancreas, tumour and splenic vein are
in mm (x, y from the image centre, z above the bottom of the stack).

The draws happen in a fixed order: moving one changes every scan.
``tests/data/test_synth.py`` pins the generated data.

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
from ..io import NESTED, atomic_dir, atomic_write_image, mark_folder, refuse_cwd_or_parent, refuse_strangers
from .geometry import Geometry

HU_MIN, HU_MAX = -1024.0, 3071.0
TCIA_IMAGES = "Pancreas-CT"
TCIA_LABELS = "TCIA_pancreas_labels-02-05-2017"
MARKER = "medseg_synth.json"
_UID_TAG = "medseg-synth-pancreas"
#: one fixed study date and time for every scan (not the time of writing: same seed, same bytes)
STUDY_DATE, STUDY_TIME = "20000101", "120000"

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


# ----------------------------------------------------------------------------- per-scan quantities
@dataclass(frozen=True)
class Around:
    """A quantity drawn once per scan, uniformly in ``nominal ± spread``."""

    nominal: float
    spread: float

    def jitter(self, rng: np.random.Generator) -> float:
        """The random part alone, uniform in ``±spread``.

        For formulas that subtract it (``t − nominal − jitter``): the pinned data
        depend on the order of the floating-point operations as well as the draws.
        """
        return float(rng.uniform(-self.spread, self.spread))

    def draw(self, rng: np.random.Generator) -> float:
        return self.nominal + self.jitter(rng)

    def shift(self, base: float, rng: np.random.Generator) -> float:
        """A value relative to another one: ``base + nominal + jitter``."""
        return base + self.nominal + self.jitter(rng)


@dataclass(frozen=True)
class Between:
    """A quantity drawn once per scan, uniformly in ``[lo, hi)``."""

    lo: float
    hi: float

    def draw(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.lo, self.hi))


# ----------------------------------------------------------------------------- anatomy
@dataclass(frozen=True)
class ScannerSpec:
    """Acquisition: the voxel grid, then what the scanner adds to the painted HU."""

    field_of_view_mm: Between = Between(320.0, 420.0)   # square, in-plane
    coverage_mm: Between = Between(115.0, 150.0)        # along z (before rounding the slice thickness)
    origin_shift_x_mm: tuple[float, float] = (-15.0, 15.0)   # of the image centre
    origin_shift_y_mm: tuple[float, float] = (-25.0, 5.0)
    origin_z_mm: Between = Between(-320.0, -120.0)      # of the bottom slice
    air_hu: float = -1000.0
    tissue_above_hu: float = -950.0                     # offset and bias apply above this
    offset_hu: Between = Between(-20.0, 20.0)           # global, per scan
    bias_hu: float = 8.0                                # SD of the smooth bias field
    bias_cells: tuple[int, int, int] = (2, 3, 3)        # bias-field periods along (z, y, x)
    blur_xy_px: Between = Between(0.4, 1.2)             # Gaussian σ
    blur_z_px: Between = Between(0.3, 0.8)
    noise_hu: Between = Between(6.0, 16.0)              # noise SD
    noise_correlation_px: float = 0.6                   # in-plane Gaussian σ applied to the noise


@dataclass(frozen=True)
class BodySpec:
    """The body cross-section (normalised), constant along z: skin, fat, muscle wall, cavity."""

    half_width: Around = Around(0.82, 0.06)         # skin ellipse semi-axes
    half_depth: Around = Around(0.60, 0.06)
    centre_v: Around = Around(0.04, 0.03)           # body centre below the image centre
    fat_thickness: Around = Around(0.05, 0.03)      # subcutaneous fat
    wall_thickness: Around = Around(0.045, 0.01)    # abdominal-wall muscle ring
    fat_hu: Around = Around(-100.0, 12.0)
    wall_hu: Around = Around(50.0, 8.0)
    mesentery_cells: tuple[int, int, int] = (3, 6, 6)   # blob-field periods along (z, y, x)
    mesentery_hu: Around = Around(30.0, 10.0)       # soft-tissue blobs in the cavity
    mesentery_above: Around = Around(0.55, 0.2)     # blob-field level (SDs) above which it is tissue
    visceral_fat_above_fat_hu: float = 10.0         # the rest of the cavity: fat, a little brighter


@dataclass(frozen=True)
class MuscleSpec:
    """Psoas (inside the cavity, growing towards the pelvis) and paraspinal muscles, one per side."""

    hu: Around = Around(50.0, 8.0)
    psoas_centre: tuple[float, float] = (0.17, 0.44)         # (± u, v)
    psoas_half_axes: tuple[float, float] = (0.07, 0.09)      # × (base + growth × (1 − t))
    psoas_base: float = 0.6
    psoas_growth: float = 0.6
    paraspinal_centre: tuple[float, float] = (0.15, 0.70)    # (± u, v + half the body's centre_v)
    paraspinal_half_axes: tuple[float, float] = (0.12, 0.08)


@dataclass(frozen=True)
class SpineSpec:
    """Vertebral bodies (cortical shell, cancellous core) separated by discs, and spinous processes."""

    centre_v: Around = Around(0.52, 0.03)
    half_width: Around = Around(0.105, 0.015)       # cortical outline
    depth_ratio: float = 0.9                        # its semi-axis along v / half_width
    core_ratios: tuple[float, float] = (0.8, 0.72)  # cancellous semi-axes / half_width
    level_height: Between = Between(0.2, 0.28)      # vertebra + disc (t)
    level_phase: Between = Between(-0.5, 0.5)       # (t)
    disc_fraction: float = 0.22                     # of each level
    cortical_hu: Around = Around(700.0, 150.0)
    cancellous_hu: Around = Around(220.0, 60.0)
    disc_hu: Around = Around(85.0, 10.0)
    spinous_gap: float = 0.09                       # behind the vertebral body
    spinous_half_axes: tuple[float, float] = (0.045, 0.09)
    spinous_hu: Around = Around(450.0, 100.0)


@dataclass(frozen=True)
class UpperOrganSpec:
    """A solid organ of the upper slices; its cross-section grows as √ from ``onset`` over ``growth``."""

    onset: Around
    growth: float
    centre_u: Around
    centre_v: Around
    half_axes: tuple[float, float]                  # at full size
    hu: Around
    texture_hu: float = 0.0                         # × the mesentery blob field


@dataclass(frozen=True)
class KidneySpec:
    """Kidneys, one per side: cortex ellipsoid with a fatty sinus on its medial side."""

    centre_t: Around = Around(0.35, 0.06)
    half_height: Around = Around(0.30, 0.05)        # (t)
    centre_u: Around = Around(0.37, 0.03)           # from the midline
    centre_v: Around = Around(0.36, 0.03)
    half_axes: tuple[float, float] = (0.11, 0.16)   # at mid height
    sinus_medial_shift: float = 0.03
    sinus_half_axes: tuple[float, float] = (0.045, 0.07)
    cortex_hu: Around = Around(170.0, 25.0)         # one value for both kidneys
    sinus_hu: Around = Around(-40.0, 20.0)


@dataclass(frozen=True)
class BowelContent:
    """What fills a bowel loop, and how often."""

    name: str
    probability: float
    hu: Around


@dataclass(frozen=True)
class BowelSpec:
    """Bowel loops: ellipsoids with a soft-tissue wall around a lumen; the distractors."""

    loops: tuple[int, int] = (6, 11)                # per scan, [low, high)
    centre_u: Between = Between(-0.45, 0.55)
    centre_v: Between = Between(-0.45, 0.15)
    half_width: Between = Between(0.05, 0.13)
    half_depth: Between = Between(0.05, 0.11)
    centre_t: Between = Between(0.0, 0.8)
    half_height: Between = Between(0.1, 0.35)       # (t)
    lumen_fraction: float = 0.75                    # of the outer semi-axes
    contents: tuple[BowelContent, ...] = (
        BowelContent("fluid", 0.35, Around(15.0, 10.0)),
        BowelContent("air", 0.2, Around(-900.0, 50.0)),
        BowelContent("positive contrast", 0.15, Around(240.0, 60.0)),
        BowelContent("collapsed", 0.3, Around(45.0, 12.0)),
    )
    wall_hu: Around = Around(45.0, 8.0)


@dataclass(frozen=True)
class VesselSpec:
    """Aorta (contrast-filled) and inferior vena cava, straight along z."""

    contrast_hu: Around = Around(170.0, 45.0)       # the aorta; the veins are relative to it
    aorta_centre: tuple[Around, Around] = (Around(0.07, 0.02), Around(0.31, 0.02))
    aorta_radius: float = 0.055
    ivc_centre: tuple[Around, Around] = (Around(-0.12, 0.02), Around(0.29, 0.02))
    ivc_half_axes: tuple[float, float] = (0.06, 0.05)
    ivc_vs_contrast_hu: Around = Around(-40.0, 15.0)


@dataclass(frozen=True)
class ControlPoint:
    """A point (mm, from the image centre) the pancreas centre line passes through."""

    name: str
    x_mm: Around
    y_mm: Around


@dataclass(frozen=True)
class PancreasSpec:
    """The target (mm): a lobulated, tapering tube along a spline, in a soft-tissue bed."""

    mid_height: Between = Between(0.38, 0.6)        # × coverage: z of the gland's middle
    rise_mm: Between = Between(8.0, 28.0)           # tail above head
    head_dip_mm: float = 4.0                        # the head sits lower still
    centre_line: tuple[ControlPoint, ...] = (
        ControlPoint("head", Around(-55.0, 8.0), Around(28.0, 6.0)),
        ControlPoint("neck", Around(-18.0, 6.0), Around(8.0, 6.0)),
        ControlPoint("body", Around(22.0, 8.0), Around(6.0, 8.0)),
        ControlPoint("tail", Around(70.0, 10.0), Around(42.0, 10.0)),
    )
    samples: int = 40                               # points along the centre line
    head_radius_mm: Between = Between(8.0, 12.0)
    tail_radius_mm: Between = Between(4.5, 7.0)
    taper_exponent: float = 0.7                     # radius: head + (tail − head) × s^0.7
    lobes: Between = Between(3.0, 6.0)              # lobulations along the gland
    lobe_phase: Between = Between(0.0, 1.0)         # (periods)
    lobe_depth: float = 0.12                        # radius × (1 ± 0.12)
    kept_length: Between = Between(0.75, 1.0)       # of the centre line: some tails are shorter
    stretch_y: Between = Between(0.75, 0.95)        # cross-section stretch (x: 1)
    stretch_z: Between = Between(1.1, 1.5)
    bed_margin_mm: Between = Between(5.0, 12.0)     # soft-tissue bed around the gland
    bed_cells: tuple[int, int, int] = (4, 8, 8)     # bed-margin wobble periods along (z, y, x)
    bed_wobble: float = 0.6                         # margin × clip(1 + 0.6 × field, 0.2, 2)
    bed_wobble_clip: tuple[float, float] = (0.2, 2.0)
    bed_reach_mm: float = 3.0                       # distances are computed up to margin + this
    bed_vs_mesentery_hu: Around = Around(10.0, 8.0)
    above_bed_hu: Between = Between(35.0, 60.0)     # the target's contrast
    texture_cells: tuple[int, int, int] = (12, 40, 40)
    texture_hu: float = 6.0
    vein_gap_mm: float = 3.0                        # between gland surface and vein centre
    vein_radius_mm: float = 3.0
    vein_vs_contrast_hu: float = -20.0


@dataclass(frozen=True)
class TumourSpec:
    """A hypodense ball in the gland (label 2) of every other scan."""

    min_samples: int = 8                            # only in glands longer than this
    radius_fraction: Between = Between(0.6, 0.95)   # of the gland radius where it sits
    darker_hu: Between = Between(20.0, 40.0)


#: the parts of the phantom, in the order they are painted (the scanner first and last)
SCANNER = ScannerSpec()
BODY = BodySpec()
MUSCLES = MuscleSpec()
SPINE = SpineSpec()
LIVER = UpperOrganSpec(onset=Around(0.35, 0.08), growth=0.4, centre_u=Around(-0.42, 0.05),
                       centre_v=Around(-0.02, 0.05), half_axes=(0.40, 0.46), hu=Around(110.0, 15.0),
                       texture_hu=6.0)
SPLEEN = UpperOrganSpec(onset=Around(0.5, 0.08), growth=0.3, centre_u=Around(0.56, 0.04),
                        centre_v=Around(0.26, 0.04), half_axes=(0.14, 0.22), hu=Around(115.0, 12.0))
KIDNEYS = KidneySpec()
BOWEL = BowelSpec()
VESSELS = VesselSpec()
PANCREAS = PancreasSpec()
TUMOUR = TumourSpec()


# ----------------------------------------------------------------------------- shapes and fields
@dataclass(eq=False)
class _Grid:
    """Voxel positions of one scan: mm axes and broadcastable normalised coordinates."""

    xs: np.ndarray          # (X,) mm from the image centre, + patient left
    ys: np.ndarray          # (Y,) mm from the image centre, + posterior
    zs: np.ndarray          # (Z,) mm above the bottom of the stack
    coverage: float         # mm along z
    U: np.ndarray           # (1, 1, X) normalised u
    V: np.ndarray           # (1, Y, 1) normalised v
    T: np.ndarray           # (Z, 1, 1) normalised t

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.zs), len(self.ys), len(self.xs))


@dataclass(eq=False)
class _Body:
    """What the later parts need from the body."""

    body: np.ndarray        # (Z, Y, X) bool: inside the skin
    cavity: np.ndarray      # (Z, Y, X) bool: inside the muscle wall
    centre_v: float
    blobs: np.ndarray       # (Z, Y, X) the mesentery blob field (also the liver's texture)
    tissue_hu: float        # the mesentery's soft tissue


@dataclass(eq=False)
class _Gland:
    """The pancreas centre line (mm, float64), its radius per point (float32) and cross-section stretch."""

    curve: np.ndarray
    radius: np.ndarray
    stretch: tuple[float, float, float]


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


def _scaled_ellipse(grid: _Grid, cu, cv, half_axes: tuple[float, float], scale: np.ndarray):
    """An ellipse whose semi-axes are ``half_axes × scale`` (scale per slice, may be 0)."""
    a, b = half_axes
    return _ellipse(grid.U, grid.V, cu, cv, a * scale + 1e-6, b * scale + 1e-6)


def _ellipsoid_profile(T: np.ndarray, centre: float, half_height: float) -> np.ndarray:
    """Cross-section scale of an ellipsoid along t: 1 at ``centre``, 0 beyond ± ``half_height``."""
    return np.sqrt(np.clip(1.0 - ((T - centre) / half_height) ** 2, 0.0, 1.0))


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


def _ball_distance(grid: _Grid, centres: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Distance (mm, <0 inside) to the union of round balls at ``centres`` (mm, k × 3)."""
    return _tube_distance(grid.xs, grid.ys, grid.zs, centres.astype(np.float32), radius, (1.0, 1.0, 1.0), 0.0)


# ----------------------------------------------------------------------------- painting the parts
def _acquisition_grid(rng: np.random.Generator, size: int, slices: int) -> tuple[Geometry, _Grid]:
    """Pixel size, slice thickness and origin of the scan, and its voxel coordinates."""
    px = round(SCANNER.field_of_view_mm.draw(rng) / size, 4)           # mm per pixel
    coverage = SCANNER.coverage_mm.draw(rng)
    thick = round(coverage / slices, 3)
    coverage = thick * slices
    corner = -(size - 1) / 2 * px
    # the x/y shifts stay numpy floats: round() of a numpy float rounds as numpy does
    origin = (round(corner + rng.uniform(*SCANNER.origin_shift_x_mm), 3),
              round(corner + rng.uniform(*SCANNER.origin_shift_y_mm), 3),
              round(SCANNER.origin_z_mm.draw(rng), 3))
    geometry = Geometry(origin, (px, px, thick), (1, 0, 0, 0, 1, 0, 0, 0, 1), (size, size, slices))
    half = px * size / 2.0
    xs = ((np.arange(size) - (size - 1) / 2) * px).astype(np.float32)
    ys = xs.copy()
    zs = ((np.arange(slices) + 0.5) * thick).astype(np.float32)
    grid = _Grid(xs, ys, zs, coverage, U=(xs / half)[None, None, :], V=(ys / half)[None, :, None],
                 T=(zs / coverage)[:, None, None])
    return geometry, grid


def _paint_body(hu: np.ndarray, grid: _Grid, rng: np.random.Generator) -> _Body:
    """Subcutaneous fat, the muscle wall, and a cavity of visceral fat with soft-tissue blobs."""
    half_width, half_depth = BODY.half_width.draw(rng), BODY.half_depth.draw(rng)
    centre_v = BODY.centre_v.draw(rng)
    fat, wall = BODY.fat_thickness.draw(rng), BODY.wall_thickness.draw(rng)

    def layer(a, b):
        return np.broadcast_to(_ellipse(grid.U, grid.V, 0.0, centre_v, a, b), grid.shape)

    body = layer(half_width, half_depth)
    inside_fat = layer(half_width - fat, half_depth - fat)
    cavity = layer(half_width - fat - wall, half_depth - fat - wall)
    fat_hu = BODY.fat_hu.draw(rng)
    hu[body] = fat_hu
    hu[inside_fat] = BODY.wall_hu.draw(rng)
    blobs = _smooth_field(rng, grid.shape, BODY.mesentery_cells)
    tissue_hu = BODY.mesentery_hu.draw(rng)
    is_tissue = blobs[cavity] > BODY.mesentery_above.draw(rng)
    hu[cavity] = np.where(is_tissue, tissue_hu, fat_hu + BODY.visceral_fat_above_fat_hu)
    return _Body(body, cavity, centre_v, blobs, tissue_hu)


def _paint_muscles(hu: np.ndarray, grid: _Grid, body: _Body, rng: np.random.Generator) -> None:
    """Psoas muscles in the cavity beside the spine, paraspinal muscles behind it."""
    muscle_hu = MUSCLES.hu.draw(rng)
    psoas_scale = MUSCLES.psoas_base + MUSCLES.psoas_growth * (1.0 - grid.T)
    (pu, pv), (pa, pb) = MUSCLES.psoas_centre, MUSCLES.psoas_half_axes
    (su, sv), (sa, sb) = MUSCLES.paraspinal_centre, MUSCLES.paraspinal_half_axes
    for side in (-1, 1):
        psoas = _ellipse(grid.U, grid.V, side * pu, pv, pa * psoas_scale, pb * psoas_scale)
        hu[psoas & body.cavity] = muscle_hu
        paraspinal = _ellipse(grid.U, grid.V, side * su, sv + body.centre_v / 2, sa, sb)
        hu[np.broadcast_to(paraspinal, grid.shape) & body.body] = muscle_hu


def _paint_spine(hu: np.ndarray, grid: _Grid, body: _Body, rng: np.random.Generator) -> None:
    """Vertebral bodies with discs at a random level height and phase, and spinous processes."""
    U, V, shape = grid.U, grid.V, grid.shape
    cv, r = SPINE.centre_v.draw(rng), SPINE.half_width.draw(rng)
    level = SPINE.level_height.draw(rng)
    disc = np.mod(grid.T + SPINE.level_phase.draw(rng), level) < SPINE.disc_fraction * level
    core_a, core_b = SPINE.core_ratios
    vertebra = np.broadcast_to(_ellipse(U, V, 0.0, cv, r, r * SPINE.depth_ratio), shape)
    core = np.broadcast_to(_ellipse(U, V, 0.0, cv, r * core_a, r * core_b), shape)
    hu[vertebra] = SPINE.cortical_hu.draw(rng)
    hu[core] = SPINE.cancellous_hu.draw(rng)
    hu[vertebra & np.broadcast_to(disc, shape)] = SPINE.disc_hu.draw(rng)
    spinous = _ellipse(U, V, 0.0, cv + r + SPINE.spinous_gap, *SPINE.spinous_half_axes)
    hu[np.broadcast_to(spinous, shape) & body.body] = SPINE.spinous_hu.draw(rng)


def _paint_upper_organ(hu: np.ndarray, grid: _Grid, organ: UpperOrganSpec, body: _Body,
                       rng: np.random.Generator) -> None:
    """Liver or spleen: an ellipse growing from ``organ.onset`` upwards, inside the cavity."""
    onset = organ.onset
    scale = np.sqrt(np.clip((grid.T - onset.nominal - onset.jitter(rng)) / organ.growth, 0.0, 1.0))
    cu, cv = organ.centre_u.draw(rng), organ.centre_v.draw(rng)
    mask = _scaled_ellipse(grid, cu, cv, organ.half_axes, scale) & body.cavity
    value = organ.hu.draw(rng)
    hu[mask] = value + organ.texture_hu * body.blobs[mask] if organ.texture_hu else value


def _paint_kidneys(hu: np.ndarray, grid: _Grid, body: _Body, rng: np.random.Generator) -> None:
    """Two kidneys, posterior on either side of the spine, each an ellipsoid with a fatty sinus."""
    cortex_hu = KIDNEYS.cortex_hu.draw(rng)
    for side in (-1, 1):
        centre_t, half_height = KIDNEYS.centre_t.draw(rng), KIDNEYS.half_height.draw(rng)
        scale = _ellipsoid_profile(grid.T, centre_t, half_height)
        cu, cv = side * KIDNEYS.centre_u.draw(rng), KIDNEYS.centre_v.draw(rng)
        kidney = _scaled_ellipse(grid, cu, cv, KIDNEYS.half_axes, scale) & body.cavity
        sinus_u = cu - side * KIDNEYS.sinus_medial_shift
        sinus = _scaled_ellipse(grid, sinus_u, cv, KIDNEYS.sinus_half_axes, scale) & kidney
        hu[kidney] = cortex_hu
        hu[sinus] = KIDNEYS.sinus_hu.draw(rng)


def _paint_bowel(hu: np.ndarray, grid: _Grid, body: _Body, rng: np.random.Generator) -> None:
    """Bowel loops at random places, each with a random content."""
    U, V, cavity = grid.U, grid.V, body.cavity
    for _ in range(int(rng.integers(*BOWEL.loops))):
        cu, cv = BOWEL.centre_u.draw(rng), BOWEL.centre_v.draw(rng)
        a, b = BOWEL.half_width.draw(rng), BOWEL.half_depth.draw(rng)
        centre_t, half_height = BOWEL.centre_t.draw(rng), BOWEL.half_height.draw(rng)
        s = _ellipsoid_profile(grid.T, centre_t, half_height)
        outer = _ellipse(U, V, cu, cv, a * s + 1e-6, b * s + 1e-6) & cavity
        f = BOWEL.lumen_fraction
        lumen = _ellipse(U, V, cu, cv, a * s * f + 1e-6, b * s * f + 1e-6) & cavity
        content = rng.choice(len(BOWEL.contents), p=[c.probability for c in BOWEL.contents])
        content_hu = [c.hu.draw(rng) for c in BOWEL.contents][content]  # all drawn, one used
        hu[outer] = BOWEL.wall_hu.draw(rng)
        hu[lumen] = content_hu


def _paint_vessels(hu: np.ndarray, grid: _Grid, body: _Body, rng: np.random.Generator) -> float:
    """Aorta and IVC; returns the contrast HU (the splenic vein is relative to it)."""
    shape = grid.shape
    contrast = VESSELS.contrast_hu.draw(rng)
    au, av = (c.draw(rng) for c in VESSELS.aorta_centre)
    r = VESSELS.aorta_radius
    aorta = _ellipse(grid.U, grid.V, au, av, r, r)
    hu[np.broadcast_to(aorta, shape) & body.cavity] = contrast
    ivc_hu = VESSELS.ivc_vs_contrast_hu.shift(contrast, rng)  # drawn before the IVC's centre
    iu, iv = (c.draw(rng) for c in VESSELS.ivc_centre)
    ivc = _ellipse(grid.U, grid.V, iu, iv, *VESSELS.ivc_half_axes)
    hu[np.broadcast_to(ivc, shape) & body.cavity] = ivc_hu
    return contrast


def _pancreas_gland(grid: _Grid, rng: np.random.Generator) -> _Gland:
    """Centre line (head low, tail high), tapering lobulated radius, shortened tail, stretch."""
    P = PANCREAS
    mid = grid.coverage * P.mid_height.draw(rng)
    rise = P.rise_mm.draw(rng)
    heights = (mid - rise / 2 - P.head_dip_mm, mid - rise / 4, mid + rise / 6, mid + rise / 2)
    ctrl = np.array([[p.x_mm.draw(rng), p.y_mm.draw(rng), z] for p, z in zip(P.centre_line, heights)])
    curve = _catmull_rom(ctrl, P.samples)
    s = np.linspace(0.0, 1.0, len(curve))          # 0 at the head, 1 at the tail
    r_head, r_tail = P.head_radius_mm.draw(rng), P.tail_radius_mm.draw(rng)
    lobes = 1.0 + P.lobe_depth * np.sin(2 * np.pi * (s * P.lobes.draw(rng) + P.lobe_phase.draw(rng)))
    radius = ((r_head + (r_tail - r_head) * s ** P.taper_exponent) * lobes).astype(np.float32)
    keep = s <= P.kept_length.draw(rng)
    stretch = (1.0, P.stretch_y.draw(rng), P.stretch_z.draw(rng))
    return _Gland(curve[keep], radius[keep], stretch)


def _paint_pancreas(hu: np.ndarray, grid: _Grid, body: _Body, contrast: float,
                    rng: np.random.Generator) -> tuple[np.ndarray, _Gland]:
    """The gland in its soft-tissue bed and the splenic vein behind it; returns (label 0/1, gland)."""
    P, cavity = PANCREAS, body.cavity
    gland = _pancreas_gland(grid, rng)
    margin = P.bed_margin_mm.draw(rng)
    dist = _tube_distance(grid.xs, grid.ys, grid.zs, gland.curve.astype(np.float32), gland.radius,
                          gland.stretch, margin + P.bed_reach_mm)
    wobble = _smooth_field(rng, grid.shape, P.bed_cells)
    bed = (dist < margin * np.clip(1.0 + P.bed_wobble * wobble, *P.bed_wobble_clip)) & cavity
    pancreas = (dist < 0.0) & cavity
    bed_hu = P.bed_vs_mesentery_hu.shift(body.tissue_hu, rng)
    above_bed = P.above_bed_hu.draw(rng)
    hu[bed] = bed_hu
    texture = _smooth_field(rng, grid.shape, P.texture_cells)
    hu[pancreas] = bed_hu + above_bed + P.texture_hu * texture[pancreas]
    start = len(gland.curve) // 3                   # the vein runs behind the body and tail
    behind = gland.radius[start:, None] * gland.stretch[1] + P.vein_gap_mm
    vein = gland.curve[start:] + np.array([0.0, 1.0, 0.0]) * behind
    vdist = _ball_distance(grid, vein, np.full(len(vein), P.vein_radius_mm, np.float32))
    hu[(vdist < 0) & cavity & ~pancreas] = contrast + P.vein_vs_contrast_hu
    return pancreas.astype(np.uint8), gland


def _paint_tumour(hu: np.ndarray, label: np.ndarray, grid: _Grid, gland: _Gland,
                  rng: np.random.Generator) -> None:
    """A darker ball (label 2) centred on the centre line, in the head or body of the gland."""
    k = int(rng.integers(2, len(gland.curve) * 2 // 3))
    radius = TUMOUR.radius_fraction.draw(rng) * float(gland.radius[k])
    tdist = _ball_distance(grid, gland.curve[k:k + 1], np.array([radius], np.float32))
    tumour = (tdist < 0) & (label > 0)
    hu[tumour] -= TUMOUR.darker_hu.draw(rng)
    label[tumour] = 2


def _scanner(hu: np.ndarray, grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    """What the scanner adds: offset and bias field on tissue, blur, correlated noise, clipping."""
    tissue = hu > SCANNER.tissue_above_hu
    offset = SCANNER.offset_hu.draw(rng)
    bias = SCANNER.bias_hu * _smooth_field(rng, grid.shape, SCANNER.bias_cells)
    hu[tissue] += offset + bias[tissue]
    sigma_xy = SCANNER.blur_xy_px.draw(rng)
    hu = ndimage.gaussian_filter(hu, (SCANNER.blur_z_px.draw(rng), sigma_xy, sigma_xy), mode="nearest")
    noise_sigma = SCANNER.noise_hu.draw(rng)
    c = SCANNER.noise_correlation_px
    noise = ndimage.gaussian_filter(rng.standard_normal(grid.shape, dtype=np.float32), (0.0, c, c))
    noise *= noise_sigma / (float(noise.std()) + 1e-6)
    hu += noise
    np.clip(hu, HU_MIN, HU_MAX, out=hu)
    return hu


# ----------------------------------------------------------------------------- phantom
def pancreas_phantom(index: int, seed: int = 0, size: int = 128, slices: int = 48) -> PancreasPhantom:
    """Generate scan ``index`` (0-based; patient number ``index + 1``) of the set.

    Independent of the other cases: scan ``i`` is the same whatever ``cases`` is.
    The parts are painted in the order the module docstring lists.
    """
    if size < 16 or slices < 2:
        raise DataError(f"synthetic scans need --size >= 16 and --slices >= 2 (got {size}, {slices})")
    rng = _rng(seed, index, size, slices)
    geometry, grid = _acquisition_grid(rng, size, slices)
    hu = np.full(grid.shape, SCANNER.air_hu, dtype=np.float32)
    body = _paint_body(hu, grid, rng)
    _paint_muscles(hu, grid, body, rng)
    _paint_spine(hu, grid, body, rng)
    _paint_upper_organ(hu, grid, LIVER, body, rng)
    _paint_upper_organ(hu, grid, SPLEEN, body, rng)
    _paint_kidneys(hu, grid, body, rng)
    _paint_bowel(hu, grid, body, rng)
    contrast = _paint_vessels(hu, grid, body, rng)
    label, gland = _paint_pancreas(hu, grid, body, contrast, rng)
    if index % 2 == 0 and len(gland.curve) > TUMOUR.min_samples:
        _paint_tumour(hu, label, grid, gland, rng)
    hu = _scanner(hu, grid, rng)
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


def _series_tags(ph: PancreasPhantom, seed: int, size_key: tuple[int, int]) -> dict:
    """The DICOM attributes every slice of the phantom's series shares (patient, study, series, pixels)."""
    key = (ph.number, *size_key)
    g = ph.geometry
    slope, intercept, signed, bits = ph.rescale
    pid = f"PANCREAS_{ph.number:04d}"
    return {
        "StudyInstanceUID": _uid(seed, *key, "study"), "SeriesInstanceUID": _uid(seed, *key, "series"),
        "FrameOfReferenceUID": _uid(seed, *key, "frame"),
        "PatientID": pid, "PatientName": pid, "Modality": "CT", "Manufacturer": "medseg synthetic phantom",
        "StudyDescription": "Pancreas-CT-like phantom", "SeriesDescription": "Pancreas",
        "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"], "BodyPartExamined": "PANCREAS", "KVP": "120",
        "StudyID": str(ph.number), "SeriesNumber": 1, "AcquisitionNumber": 1,
        "StudyDate": STUDY_DATE, "StudyTime": STUDY_TIME, "PatientPosition": "HFS",
        # type 2 attributes of the CT Image IOD: present, empty (unknown) for a phantom
        "PatientBirthDate": "", "PatientSex": "", "ReferringPhysicianName": "", "AccessionNumber": "",
        "PositionReferenceIndicator": "",
        "ImageOrientationPatient": ["1", "0", "0", "0", "1", "0"],
        "PixelSpacing": [_ds(g.spacing[1]), _ds(g.spacing[0])],  # row, column spacing
        "SliceThickness": _ds(g.spacing[2]),
        "Rows": int(g.size[1]), "Columns": int(g.size[0]), "SamplesPerPixel": 1,
        "PhotometricInterpretation": "MONOCHROME2", "BitsAllocated": 16, "BitsStored": bits,
        "HighBit": bits - 1, "PixelRepresentation": signed,
        "RescaleIntercept": _ds(intercept), "RescaleSlope": _ds(slope), "RescaleType": "HU",
        "WindowCenter": "40", "WindowWidth": "400",
    }


def _ct_slice(name: str, sop: str, shared: dict, **tags):
    """One CT Image Storage file: the shared series attributes plus this slice's ``tags``."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(name, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop
    for keyword, value in {**shared, **tags}.items():
        setattr(ds, keyword, value)
    return ds


def write_dicom_series(ph: PancreasPhantom, folder: Path, seed: int, size_key: tuple[int, int],
                       reversed_names: bool, unpadded_names: bool) -> list[Path]:
    """Write the phantom as a CT Image Storage series, one file per slice."""
    folder.mkdir(parents=True, exist_ok=True)
    g = ph.geometry
    stored = stored_values(ph.hu, ph.rescale)
    pixel_type = "<i2" if ph.rescale[2] else "<u2"
    shared = _series_tags(ph, seed, size_key)
    n = stored.shape[0]
    paths = []
    for k in range(n):
        number = n - k if reversed_names else k + 1  # InstanceNumber follows the file name
        name = f"1-{number}.dcm" if unpadded_names else f"1-{number:03d}.dcm"
        z = g.origin[2] + k * g.spacing[2]
        pixels = np.ascontiguousarray(stored[k]).astype(pixel_type).tobytes()
        ds = _ct_slice(name, _uid(seed, ph.number, *size_key, "sop", k), shared, InstanceNumber=number,
                       ImagePositionPatient=[_ds(g.origin[0]), _ds(g.origin[1]), _ds(z)],
                       SliceLocation=_ds(z), PixelData=pixels)
        ds.save_as(folder / name, enforce_file_format=True)
        paths.append(folder / name)
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
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_image(path, geometry.to_sitk(array), True)  # checked: SimpleITK may not raise


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
                 "training", "test", "imagesTs", "labelsTs")


def _check_out(out: Path, force: bool) -> None:
    if out.is_symlink():  # refused now, not after generating: the link is never replaced
        raise DataError(f"{out}: is a symbolic link; give the folder itself (or a new name) "
                        "for the synthetic dataset")
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise DataError(f"{out}: folder exists and is not empty; pass --force to replace it")
        if not (out / MARKER).is_file():
            raise DataError(f"{out}: not written by 'medseg data synth' (no {MARKER}); "
                            f"refusing to replace it even with --force — remove it yourself")
        refuse_cwd_or_parent(out)
        refuse_strangers(out, "synthetic dataset", SYNTH_ENTRIES, NESTED["synth"])


def _write_tcia_case(root: Path, ph: PancreasPhantom, index: int, seed: int,
                     size_key: tuple[int, int]) -> None:
    """DICOM series under ``Pancreas-CT/`` and the NIfTI label, with patient ``index``'s quirks."""
    style = _tcia_style(index)
    folder = root / TCIA_IMAGES / f"PANCREAS_{ph.number:04d}"
    folder = folder.joinpath(*_study_folders(ph, seed, size_key, style, _rng(seed, index, 1)))
    write_dicom_series(ph, folder, seed, size_key, style["reversed_names"], style["unpadded_names"])
    arr, geom = stored_label(ph, label_storage(index), (ph.label > 0).astype(np.uint8))
    _write_nifti(arr, geom, root / TCIA_LABELS / f"label{ph.number:04d}.nii.gz")


def _write_msd_case(root: Path, ph: PancreasPhantom) -> dict:
    """Image (int16 HU) and label (0/1/2) NIfTI; returns the case's ``dataset.json`` entry."""
    name = f"pancreas_{ph.number:03d}.nii.gz"
    _write_nifti(np.rint(ph.hu).astype(np.int16), ph.geometry, root / "imagesTr" / name)
    _write_nifti(ph.label, ph.geometry, root / "labelsTr" / name)
    return {"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"}


def _msd_dataset_json(training: list[dict]) -> dict:
    return {
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
    with atomic_dir(out) as tmp:
        training = []
        for i in tqdm(range(cases), desc="synth pancreas", unit="case", disable=None if progress else True):
            ph = pancreas_phantom(i, seed=seed, size=size, slices=slices)
            if layout == "tcia":
                _write_tcia_case(tmp, ph, i, seed, (size, slices))
            else:
                training.append(_write_msd_case(tmp, ph))
        if layout == "msd":
            (tmp / "dataset.json").write_text(json.dumps(_msd_dataset_json(training), indent=4) + "\n")
        params = {"dataset": "pancreas", "layout": layout, "cases": cases, "size": size,
                  "slices": slices, "seed": seed}
        (tmp / MARKER).write_text(json.dumps(params, indent=1, sort_keys=True) + "\n")
        mark_folder(tmp, "synth")
    return out
