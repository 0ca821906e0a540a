"""A small abdominal CT dataset in nnU-Net v2 raw format: two contrast phases, four labels.

``medseg data synth abdomen --out DIR`` writes ``DIR/Dataset901_SynthAbdomen/``
(``DIR`` plays the part of nnU-Net's ``nnUNet_raw``: other ``DatasetXXX_Name``
folders beside it are left alone)::

    Dataset901_SynthAbdomen/
      dataset.json
      imagesTr/abdomen_001_0000.nii.gz   # channel 0: non-contrast CT (int16 HU)
      imagesTr/abdomen_001_0001.nii.gz   # channel 1: portal-venous contrast CT (int16 HU)
      labelsTr/abdomen_001.nii.gz        # uint8: 0 background, 1 liver, 2 kidney, 3 spleen, 4 tumour
      imagesTs/abdomen_017_0000.nii.gz … # held-out cases, both channels
      labelsTs/abdomen_017.nii.gz …      # their labels (not part of nnU-Net's format; it ignores them)

Both channels are named ``"CT"`` in ``channel_names``: nnU-Net picks its CT
normalisation by that exact name (case-insensitive, ``nnunetv2/preprocessing/
normalization/map_channel_name_to_normalization.py``; any other name gets a
per-image z-score), and medseg's plan does the same. The phases are told apart
by their channel index, documented in ``dataset.json``'s ``description``.

The phantom is not anatomy-accurate (see :mod:`medseg.data.synth_pancreas` for
the ideas it shares: normalised coordinates, per-scan :class:`Around` /
:class:`Between` quantities, parts painted in a fixed order). Each scan (LPS:
+x patient left = image right, +y posterior, +z superior) has

* a body ellipse with subcutaneous fat, an abdominal-wall muscle ring,
  visceral fat with soft-tissue blobs, psoas and paraspinal muscles, a spine;
* bowel loops (fluid, air, positive oral contrast, collapsed);
* the labelled organs, their outlines wobbled by a smooth field: liver (1;
  upper slices, patient right, growing upwards), spleen (3; upper, left),
  kidneys (2; parenchyma, around a fatty sinus that is background);
* aorta and inferior vena cava, painted over the organs (background);
* in two of every three scans (not index 1, 4, 7, …) one or two small
  hypodense balls inside the liver: the tumour (4), well under 1 % of the
  voxels;
* the lowest slices hold no organ at all.

The two phases share the anatomy and the geometry. In the non-contrast phase
liver, spleen, kidneys, muscle and tumour lie within ~30 HU of each other
(the tumour only 5–15 HU below the liver); in the contrast phase the kidneys,
spleen, liver and vessels enhance by amounts drawn per scan while the tumour
barely enhances — so channel 1 carries what channel 0 lacks. Organ sizes and
positions, enhancement, a global HU offset, a smooth bias field, blur and
noise (σ 5–15 HU, drawn per scan, independent per phase) vary per scan.

Storage: every fourth case from index 1 is written in RAS, every fourth from
index 3 in LPI (``SimpleITK.DICOMOrient`` on both channels and the label
alike, so the three files of a case share one geometry exactly); the others in
LPS. Pixel size (FOV 270–330 mm over ``size`` pixels: ~2.8–3.4 mm at 96) and
slice thickness (coverage 88–104 mm over ``slices``: ~2.75–3.25 mm at 32)
vary per scan.

Everything is drawn from ``numpy.random.default_rng`` seeded by ``(seed,
index, size, slices)``: case ``i`` is the same whatever the number of cases,
and the same seed gives byte-identical files. Training cases are indices
``0 … cases−1`` (``abdomen_001`` …), test cases the next ``test_cases``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..errors import DataError
from ..io import atomic_dir, atomic_write_image, mark_folder
from .geometry import Geometry
from .synth_pancreas import (HU_MIN, HU_MAX, MARKER, Around, Between, _check_out, _ellipse,
                             _ellipsoid_profile, _rng)

DATASET_ID = 901
DATASET_NAME = "SynthAbdomen"
#: the dataset folder written under ``--out`` (nnU-Net's ``DatasetXXX_Name``)
DATASET_FOLDER = f"Dataset{DATASET_ID:03d}_{DATASET_NAME}"
FILE_ENDING = ".nii.gz"
CASE_PREFIX = "abdomen"
#: nnU-Net v2 ``labels``: name → value, background 0, consecutive
LABELS = {"background": 0, "liver": 1, "kidney": 2, "spleen": 3, "tumour": 4}
#: nnU-Net v2 ``channel_names``: "CT" selects CT normalisation (nnU-Net and medseg) for both phases
CHANNEL_NAMES = {"0": "CT", "1": "CT"}
PHASES = ("non-contrast", "portal-venous contrast")
LIVER, KIDNEY, SPLEEN, TUMOUR_LABEL = 1, 2, 3, 4
#: salt of the random streams (pancreas phantom: none), so case i differs from pancreas scan i
_STREAM = 0xABD0


def storage_orientation(index: int) -> str:
    """The orientation case ``index`` (0-based) is stored in (SimpleITK/DICOM code):
    ``"RAS"`` for index 1, 5, 9, …; ``"LPI"`` for 3, 7, 11, …; ``"LPS"`` (as generated) otherwise."""
    return {1: "RAS", 3: "LPI"}.get(index % 4, "LPS")


def has_tumour(index: int) -> bool:
    """Whether case ``index`` is drawn with a liver tumour (not index 1, 4, 7, …); a tumour
    that finds no room in the liver (tiny grids) is left out too."""
    return index % 3 != 1


def case_name(index: int) -> str:
    """``abdomen_001`` for index 0."""
    return f"{CASE_PREFIX}_{index + 1:03d}"


# ----------------------------------------------------------------------------- per-scan quantities
@dataclass(frozen=True)
class Phased:
    """A tissue's HU in the non-contrast phase and what the contrast phase adds, drawn per scan."""

    plain: Around
    enhancement: Around = Around(0.0, 0.0)

    def draw(self, rng: np.random.Generator) -> tuple[float, float]:
        plain = self.plain.draw(rng)
        return plain, plain + self.enhancement.draw(rng)


@dataclass(frozen=True)
class ScannerSpec:
    """Acquisition: the voxel grid, then what the scanner adds to each phase's painted HU."""

    field_of_view_mm: Between = Between(270.0, 330.0)   # square, in-plane
    coverage_mm: Between = Between(88.0, 104.0)         # along z
    origin_shift_x_mm: Between = Between(-15.0, 15.0)   # of the image centre
    origin_shift_y_mm: Between = Between(-20.0, 5.0)
    origin_z_mm: Between = Between(-250.0, -100.0)      # of the bottom slice
    air_hu: float = -1000.0
    tissue_above_hu: float = -950.0                     # offset and bias apply above this
    offset_hu: Between = Between(-15.0, 15.0)           # global, per scan, both phases
    bias_hu: float = 6.0                                # SD of the smooth bias field (both phases)
    bias_cells: tuple[int, int, int] = (2, 3, 3)
    blur_xy_px: Between = Between(0.3, 1.0)             # Gaussian σ, both phases
    blur_z_px: Between = Between(0.2, 0.6)
    noise_hu: Between = Between(5.0, 15.0)              # noise SD of the non-contrast phase
    contrast_noise_ratio: Between = Between(0.85, 1.2)  # contrast-phase noise SD / non-contrast
    noise_correlation_px: float = 0.6


@dataclass(frozen=True)
class BodySpec:
    """Body cross-section (normalised), constant along z: skin, fat, muscle wall, cavity."""

    half_width: Around = Around(0.84, 0.05)
    half_depth: Around = Around(0.62, 0.05)
    centre_v: Around = Around(0.04, 0.03)
    fat_thickness: Around = Around(0.06, 0.03)
    wall_thickness: Around = Around(0.045, 0.01)
    fat: Phased = Phased(Around(-100.0, 12.0))
    muscle: Phased = Phased(Around(50.0, 8.0), Around(8.0, 4.0))   # wall, psoas, paraspinal
    mesentery_cells: tuple[int, int, int] = (3, 6, 6)
    mesentery: Phased = Phased(Around(30.0, 10.0), Around(25.0, 10.0))
    mesentery_above: Around = Around(0.6, 0.2)          # blob-field level (SDs) above which it is tissue
    visceral_fat_above_fat_hu: float = 10.0
    psoas_centre: tuple[float, float] = (0.17, 0.44)
    psoas_half_axes: tuple[float, float] = (0.07, 0.09)  # × (0.6 + 0.6 × (1 − t))
    paraspinal_centre: tuple[float, float] = (0.15, 0.70)
    paraspinal_half_axes: tuple[float, float] = (0.12, 0.08)


@dataclass(frozen=True)
class SpineSpec:
    """Vertebral body (cortical shell, cancellous core) with discs, and the spinous process."""

    centre_v: Around = Around(0.52, 0.03)
    half_width: Around = Around(0.105, 0.015)
    level_height: Between = Between(0.25, 0.35)         # vertebra + disc (t)
    level_phase: Between = Between(0.0, 1.0)
    disc_fraction: float = 0.22
    cortical_hu: Around = Around(700.0, 150.0)
    cancellous_hu: Around = Around(220.0, 60.0)
    disc_hu: Around = Around(85.0, 10.0)
    spinous_hu: Around = Around(450.0, 100.0)


@dataclass(frozen=True)
class BowelContent:
    name: str
    probability: float
    hu: Phased


@dataclass(frozen=True)
class BowelSpec:
    """Bowel loops: a soft-tissue wall around a lumen (background, the distractors)."""

    loops: tuple[int, int] = (5, 10)                    # per scan, [low, high)
    centre_u: Between = Between(-0.45, 0.55)
    centre_v: Between = Between(-0.45, 0.15)
    half_width: Between = Between(0.05, 0.13)
    half_depth: Between = Between(0.05, 0.11)
    centre_t: Between = Between(0.0, 0.7)
    half_height: Between = Between(0.1, 0.35)
    lumen_fraction: float = 0.75
    contents: tuple[BowelContent, ...] = (
        BowelContent("fluid", 0.35, Phased(Around(15.0, 10.0))),
        BowelContent("air", 0.2, Phased(Around(-900.0, 50.0))),
        BowelContent("positive oral contrast", 0.15, Phased(Around(240.0, 60.0))),
        BowelContent("collapsed", 0.3, Phased(Around(45.0, 12.0), Around(20.0, 8.0))),
    )
    wall: Phased = Phased(Around(45.0, 8.0), Around(25.0, 10.0))


@dataclass(frozen=True)
class OrganSpec:
    """A labelled solid organ: an ellipse per slice whose size follows a profile along t,
    its outline wobbled by a smooth field."""

    label: int
    hu: Phased
    centre_u: Around
    centre_v: Around
    half_axes: tuple[float, float]                      # at full size
    size: Around = Around(1.0, 0.12)                    # × half_axes, per scan
    onset: Around | None = None                         # upper organ: grows as √ from onset …
    growth: float = 0.3                                 # … over this much t
    centre_t: Around | None = None                      # ellipsoid: centre and half height (t)
    half_height: Around | None = None
    wobble: float = 0.12                                # outline radius × (1 ± wobble × field)
    wobble_cells: tuple[int, int, int] = (3, 4, 4)
    texture_hu: float = 0.0                             # × a fine smooth field, both phases


@dataclass(frozen=True)
class KidneySinusSpec:
    medial_shift: float = 0.03
    half_axes: tuple[float, float] = (0.045, 0.07)
    hu: Phased = Phased(Around(-40.0, 20.0))


@dataclass(frozen=True)
class VesselSpec:
    """Aorta and inferior vena cava, straight along z, painted over the organs."""

    aorta: Phased = Phased(Around(42.0, 6.0), Around(170.0, 50.0))
    aorta_centre: tuple[Around, Around] = (Around(0.07, 0.02), Around(0.31, 0.02))
    aorta_radius: float = 0.055
    ivc: Phased = Phased(Around(40.0, 6.0), Around(110.0, 30.0))
    ivc_centre: tuple[Around, Around] = (Around(-0.12, 0.02), Around(0.29, 0.02))
    ivc_half_axes: tuple[float, float] = (0.06, 0.05)


@dataclass(frozen=True)
class TumourSpec:
    """Hypodense balls inside the liver (mm); barely enhancing."""

    two_probability: float = 0.3                        # one lesion, else two
    radius_mm: Between = Between(6.0, 14.0)
    plain_vs_liver_hu: Between = Between(-15.0, -5.0)
    enhancement: Between = Between(0.0, 20.0)           # the liver's is 35–65


SCANNER = ScannerSpec()
BODY = BodySpec()
SPINE = SpineSpec()
BOWEL = BowelSpec()
LIVER_SPEC = OrganSpec(LIVER, Phased(Around(58.0, 8.0), Around(50.0, 15.0)), centre_u=Around(-0.40, 0.05),
                       centre_v=Around(-0.04, 0.05), half_axes=(0.42, 0.48), onset=Around(0.32, 0.08),
                       growth=0.35, texture_hu=5.0)
SPLEEN_SPEC = OrganSpec(SPLEEN, Phased(Around(46.0, 6.0), Around(70.0, 20.0)), centre_u=Around(0.55, 0.04),
                        centre_v=Around(0.25, 0.05), half_axes=(0.17, 0.25), size=Around(1.0, 0.2),
                        onset=Around(0.5, 0.08), growth=0.25)
KIDNEY_SPEC = OrganSpec(KIDNEY, Phased(Around(32.0, 6.0), Around(140.0, 40.0)), centre_u=Around(0.37, 0.03),
                        centre_v=Around(0.36, 0.03), half_axes=(0.11, 0.16), centre_t=Around(0.42, 0.06),
                        half_height=Around(0.27, 0.05), wobble=0.06)
KIDNEY_SINUS = KidneySinusSpec()
VESSELS = VesselSpec()
TUMOUR = TumourSpec()


# ----------------------------------------------------------------------------- the phantom
def _interpolation_matrix(n: int, m: int) -> np.ndarray:
    """(n, m) weights of linear interpolation from m coarse cells (centred) onto n voxels."""
    pos = np.clip((np.arange(n) + 0.5) * m / n - 0.5, 0.0, m - 1.0)
    lo = np.minimum(np.floor(pos).astype(int), max(m - 2, 0))
    frac = pos - lo
    w = np.zeros((n, m), np.float32)
    w[np.arange(n), lo] = 1.0 - frac
    if m > 1:
        w[np.arange(n), lo + 1] += frac
    return w


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int, int], cells: tuple[int, int, int]) -> np.ndarray:
    """A smooth random field, ~N(0, 1), varying over about ``cells`` periods per axis.

    :func:`medseg.data.synth_pancreas._smooth_field`'s idea with separable linear
    interpolation (matrix products), several times faster on these small grids.
    """
    coarse = rng.standard_normal(tuple(int(c) + 2 for c in cells)).astype(np.float32)
    wz, wy, wx = (_interpolation_matrix(s, c) for s, c in zip(shape, coarse.shape))
    f = np.einsum("zc,cyx->zyx", wz, coarse)
    f = np.einsum("yc,zcx->zyx", wy, f)
    f = f @ wx.T
    return ((f - f.mean()) / (f.std() + 1e-6)).astype(np.float32)


@dataclass
class AbdomenPhantom:
    """One generated scan, before it is written.

    Attributes:
        index: 0-based case index (``abdomen_001`` is 0).
        hu: (2, Z, Y, X) int16 HU: non-contrast, contrast phase; z ascending, as generated (LPS).
        label: (Z, Y, X) uint8 with :data:`LABELS` values.
        geometry: the generated (LPS) geometry; :attr:`orientation` is how it is stored.
    """

    index: int
    hu: np.ndarray
    label: np.ndarray
    geometry: Geometry
    orientation: str

    @property
    def name(self) -> str:
        return case_name(self.index)


@dataclass(eq=False)
class _Grid:
    xs: np.ndarray          # (X,) mm from the image centre, + patient left
    ys: np.ndarray          # (Y,) mm from the image centre, + posterior
    zs: np.ndarray          # (Z,) mm above the bottom of the stack
    spacing_zyx: tuple[float, float, float]
    U: np.ndarray           # (1, 1, X) normalised u
    V: np.ndarray           # (1, Y, 1) normalised v
    T: np.ndarray           # (Z, 1, 1) normalised t

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.zs), len(self.ys), len(self.xs))


class _Canvas:
    """Both phases' HU and the label, painted together."""

    def __init__(self, shape: tuple[int, int, int]):
        self.hu = np.full((2, *shape), SCANNER.air_hu, dtype=np.float32)
        self.label = np.zeros(shape, dtype=np.uint8)

    def paint(self, mask: np.ndarray, values: tuple[float, float], label: int = 0,
              texture: np.ndarray | None = None) -> None:
        mask = np.broadcast_to(mask, self.label.shape)
        extra = 0.0 if texture is None else texture[mask]
        for phase in (0, 1):
            self.hu[phase][mask] = values[phase] + extra
        self.label[mask] = label


def _acquisition_grid(rng: np.random.Generator, size: int, slices: int) -> tuple[Geometry, _Grid]:
    px = round(SCANNER.field_of_view_mm.draw(rng) / size, 4)
    thick = round(SCANNER.coverage_mm.draw(rng) / slices, 3)
    corner = -(size - 1) / 2 * px
    origin = (round(corner + SCANNER.origin_shift_x_mm.draw(rng), 3),
              round(corner + SCANNER.origin_shift_y_mm.draw(rng), 3),
              round(SCANNER.origin_z_mm.draw(rng), 3))
    geometry = Geometry(origin, (px, px, thick), (1, 0, 0, 0, 1, 0, 0, 0, 1), (size, size, slices))
    half = px * size / 2.0
    xs = ((np.arange(size) - (size - 1) / 2) * px).astype(np.float32)
    zs = ((np.arange(slices) + 0.5) * thick).astype(np.float32)
    grid = _Grid(xs, xs.copy(), zs, (thick, px, px), U=(xs / half)[None, None, :],
                 V=(xs / half)[None, :, None], T=(zs / (thick * slices))[:, None, None])
    return geometry, grid


def _paint_body(c: _Canvas, grid: _Grid, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Skin/fat, muscle wall, cavity (visceral fat + blobs), psoas, paraspinal; returns (body, cavity)."""
    B = BODY
    hw, hd, cv = B.half_width.draw(rng), B.half_depth.draw(rng), B.centre_v.draw(rng)
    fat, wall = B.fat_thickness.draw(rng), B.wall_thickness.draw(rng)

    def layer(a, b):
        return np.broadcast_to(_ellipse(grid.U, grid.V, 0.0, cv, a, b), grid.shape)

    body, inner, cavity = layer(hw, hd), layer(hw - fat, hd - fat), layer(hw - fat - wall, hd - fat - wall)
    fat_hu, muscle_hu = B.fat.draw(rng), B.muscle.draw(rng)
    c.paint(body, fat_hu)
    c.paint(inner, muscle_hu)
    blobs = _smooth_field(rng, grid.shape, B.mesentery_cells)
    tissue = cavity & (blobs > B.mesentery_above.draw(rng))
    c.paint(cavity, (fat_hu[0] + B.visceral_fat_above_fat_hu, fat_hu[1] + B.visceral_fat_above_fat_hu))
    c.paint(tissue, B.mesentery.draw(rng))
    psoas_scale = 0.6 + 0.6 * (1.0 - grid.T)
    (pu, pv), (pa, pb) = B.psoas_centre, B.psoas_half_axes
    (su, sv), (sa, sb) = B.paraspinal_centre, B.paraspinal_half_axes
    for side in (-1, 1):
        c.paint(_ellipse(grid.U, grid.V, side * pu, pv, pa * psoas_scale, pb * psoas_scale) & cavity,
                muscle_hu)
        c.paint(np.broadcast_to(_ellipse(grid.U, grid.V, side * su, sv + cv / 2, sa, sb), grid.shape) & body,
                muscle_hu)
    return body, cavity


def _paint_spine(c: _Canvas, grid: _Grid, body: np.ndarray, rng: np.random.Generator) -> None:
    S, U, V = SPINE, grid.U, grid.V
    cv, r = S.centre_v.draw(rng), S.half_width.draw(rng)
    level = S.level_height.draw(rng)
    disc = np.mod(grid.T + S.level_phase.draw(rng), level) < S.disc_fraction * level
    vertebra = np.broadcast_to(_ellipse(U, V, 0.0, cv, r, r * 0.9), grid.shape)
    cortical, cancellous, disc_hu = S.cortical_hu.draw(rng), S.cancellous_hu.draw(rng), S.disc_hu.draw(rng)
    c.paint(vertebra, (cortical, cortical))
    c.paint(_ellipse(U, V, 0.0, cv, r * 0.8, r * 0.72), (cancellous, cancellous))
    c.paint(vertebra & np.broadcast_to(disc, grid.shape), (disc_hu, disc_hu))
    spinous = S.spinous_hu.draw(rng)
    c.paint(np.broadcast_to(_ellipse(U, V, 0.0, cv + r + 0.09, 0.045, 0.09), grid.shape) & body,
            (spinous, spinous))


def _paint_bowel(c: _Canvas, grid: _Grid, cavity: np.ndarray, rng: np.random.Generator) -> None:
    U, V = grid.U, grid.V
    for _ in range(int(rng.integers(*BOWEL.loops))):
        cu, cv = BOWEL.centre_u.draw(rng), BOWEL.centre_v.draw(rng)
        a, b = BOWEL.half_width.draw(rng), BOWEL.half_depth.draw(rng)
        s = _ellipsoid_profile(grid.T, BOWEL.centre_t.draw(rng), BOWEL.half_height.draw(rng))
        f = BOWEL.lumen_fraction
        content = rng.choice(len(BOWEL.contents), p=[x.probability for x in BOWEL.contents])
        content_hu = [x.hu.draw(rng) for x in BOWEL.contents][content]  # all drawn, one used
        c.paint(_ellipse(U, V, cu, cv, a * s + 1e-6, b * s + 1e-6) & cavity, BOWEL.wall.draw(rng))
        c.paint(_ellipse(U, V, cu, cv, a * s * f + 1e-6, b * s * f + 1e-6) & cavity, content_hu)


def _organ_mask(grid: _Grid, spec: OrganSpec, cu: float, cv: float, rng: np.random.Generator) -> np.ndarray:
    """The organ's voxels: per-slice ellipse × the t profile, outline wobbled."""
    if spec.onset is not None:
        onset = spec.onset.draw(rng)
        scale = np.sqrt(np.clip((grid.T - onset) / spec.growth, 0.0, 1.0))
    else:
        scale = _ellipsoid_profile(grid.T, spec.centre_t.draw(rng), spec.half_height.draw(rng))
    k = spec.size.draw(rng)
    a, b = spec.half_axes[0] * k * scale + 1e-6, spec.half_axes[1] * k * scale + 1e-6
    r2 = ((grid.U - cu) / a) ** 2 + ((grid.V - cv) / b) ** 2
    wobble = 1.0 + spec.wobble * _smooth_field(rng, grid.shape, spec.wobble_cells)
    return (r2 <= wobble ** 2) & (scale > 0)


def _paint_organs(c: _Canvas, grid: _Grid, cavity: np.ndarray, rng: np.random.Generator) -> None:
    """Liver, spleen, then both kidneys (each overwrites what it covers)."""
    for spec in (LIVER_SPEC, SPLEEN_SPEC):
        cu, cv = spec.centre_u.draw(rng), spec.centre_v.draw(rng)
        mask = _organ_mask(grid, spec, cu, cv, rng) & cavity
        values = spec.hu.draw(rng)
        texture = spec.texture_hu * _smooth_field(rng, grid.shape, (8, 16, 16)) if spec.texture_hu else None
        c.paint(mask, values, spec.label, texture)
    cortex = KIDNEY_SPEC.hu.draw(rng)
    for side in (-1, 1):
        cu, cv = side * KIDNEY_SPEC.centre_u.draw(rng), KIDNEY_SPEC.centre_v.draw(rng)
        kidney = _organ_mask(grid, KIDNEY_SPEC, cu, cv, rng) & cavity
        c.paint(kidney, cortex, KIDNEY)
        # the sinus: a fatty ellipse on the medial side, as tall as the kidney's middle half
        zs = np.flatnonzero(kidney.any(axis=(1, 2)))
        if zs.size:
            t = np.zeros(grid.shape[0], bool)
            t[zs[0] + zs.size // 4: zs[-1] + 1 - zs.size // 4] = True
            sinus = _ellipse(grid.U, grid.V, cu - side * KIDNEY_SINUS.medial_shift, cv,
                             *KIDNEY_SINUS.half_axes) & kidney & t[:, None, None]
            c.paint(sinus, KIDNEY_SINUS.hu.draw(rng))


def _paint_vessels(c: _Canvas, grid: _Grid, cavity: np.ndarray, rng: np.random.Generator) -> None:
    au, av = (x.draw(rng) for x in VESSELS.aorta_centre)
    r = VESSELS.aorta_radius
    c.paint(_ellipse(grid.U, grid.V, au, av, r, r) & cavity, VESSELS.aorta.draw(rng))
    iu, iv = (x.draw(rng) for x in VESSELS.ivc_centre)
    c.paint(_ellipse(grid.U, grid.V, iu, iv, *VESSELS.ivc_half_axes) & cavity, VESSELS.ivc.draw(rng))


def _paint_tumours(c: _Canvas, grid: _Grid, rng: np.random.Generator) -> None:
    """One or two balls centred where the liver is at least their radius deep (mm)."""
    liver = c.label == LIVER
    if not liver.any():
        return
    box = ndimage.find_objects(liver.astype(np.uint8))[0]
    box = tuple(slice(max(b.start - 1, 0), b.stop + 1) for b in box)
    depth = np.zeros(grid.shape, np.float64)
    depth[box] = ndimage.distance_transform_edt(np.pad(liver[box], 1), sampling=grid.spacing_zyx)[1:-1, 1:-1, 1:-1]
    count = 2 if rng.random() < TUMOUR.two_probability else 1
    Z, Y, X = np.meshgrid(grid.zs, grid.ys, grid.xs, indexing="ij", sparse=True)
    for _ in range(count):
        radius = TUMOUR.radius_mm.draw(rng)
        offset, enhancement = TUMOUR.plain_vs_liver_hu.draw(rng), TUMOUR.enhancement.draw(rng)
        pick = rng.random()
        radius = min(radius, 0.9 * float(depth.max()))
        if radius < min(grid.spacing_zyx):
            continue
        candidates = np.flatnonzero(depth.ravel() >= radius)
        k, j, i = np.unravel_index(candidates[int(pick * candidates.size)], grid.shape)
        ball = ((Z - grid.zs[k]) ** 2 + (Y - grid.ys[j]) ** 2 + (X - grid.xs[i]) ** 2 <= radius ** 2) & liver
        plain = float(np.median(c.hu[0][ball])) + offset
        # the liver's mean enhancement around it, minus what the tumour lacks
        liver_enh = float(np.median(c.hu[1][ball] - c.hu[0][ball]))
        c.paint(ball, (plain, plain + min(enhancement, liver_enh)), TUMOUR_LABEL)


def _scanner(hu: np.ndarray, grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    """Offset and bias field on tissue (both phases), blur, independent correlated noise, int16."""
    tissue = hu[0] > SCANNER.tissue_above_hu
    shift = SCANNER.offset_hu.draw(rng) + SCANNER.bias_hu * _smooth_field(rng, grid.shape, SCANNER.bias_cells)
    sxy, sz = SCANNER.blur_xy_px.draw(rng), SCANNER.blur_z_px.draw(rng)
    sigma = SCANNER.noise_hu.draw(rng)
    sigmas = (sigma, sigma * SCANNER.contrast_noise_ratio.draw(rng))
    c = SCANNER.noise_correlation_px
    out = np.empty(hu.shape, np.int16)
    for phase in (0, 1):
        img = hu[phase]
        img[tissue] += shift[tissue]
        img = ndimage.gaussian_filter(img, (sz, sxy, sxy), mode="nearest")
        noise = ndimage.gaussian_filter(rng.standard_normal(grid.shape, dtype=np.float32), (0.0, c, c))
        img += noise * (sigmas[phase] / (float(noise.std()) + 1e-6))
        out[phase] = np.rint(np.clip(img, HU_MIN, HU_MAX))
    return out


def abdomen_phantom(index: int, seed: int = 0, size: int = 96, slices: int = 32) -> AbdomenPhantom:
    """Generate case ``index`` (0-based): both phases, the label, the geometry.

    Independent of the other cases. The parts are painted in the order the
    module docstring lists; the draws happen in that order (moving one changes
    every case).
    """
    if size < 16 or slices < 4:
        raise DataError(f"synthetic scans need --size >= 16 and --slices >= 4 (got {size}, {slices})")
    rng = _rng(seed, _STREAM, index, size, slices)
    geometry, grid = _acquisition_grid(rng, size, slices)
    c = _Canvas(grid.shape)
    body, cavity = _paint_body(c, grid, rng)
    _paint_spine(c, grid, body, rng)
    _paint_bowel(c, grid, cavity, rng)
    _paint_organs(c, grid, cavity, rng)
    _paint_vessels(c, grid, cavity, rng)
    if has_tumour(index):
        _paint_tumours(c, grid, rng)
    hu = _scanner(c.hu, grid, rng)
    return AbdomenPhantom(index, hu, c.label, geometry, storage_orientation(index))


# ----------------------------------------------------------------------------- writing
def stored_images(ph: AbdomenPhantom) -> tuple[list, object]:
    """The SimpleITK images as written: ([channel 0, channel 1], label), in :attr:`orientation`."""
    import SimpleITK as sitk

    images = [ph.geometry.to_sitk(ph.hu[k]) for k in range(ph.hu.shape[0])]
    label = ph.geometry.to_sitk(ph.label)
    if ph.orientation != "LPS":
        images = [sitk.DICOMOrient(img, ph.orientation) for img in images]
        label = sitk.DICOMOrient(label, ph.orientation)
    return images, label


def _write_case(ph: AbdomenPhantom, images_dir: Path, labels_dir: Path) -> None:
    images, label = stored_images(ph)
    for k, img in enumerate(images):
        atomic_write_image(images_dir / f"{ph.name}_{k:04d}{FILE_ENDING}", img, True)  # checked
    atomic_write_image(labels_dir / f"{ph.name}{FILE_ENDING}", label, True)


def dataset_json(num_training: int) -> dict:
    """nnU-Net v2 ``dataset.json`` (the keys of ``nnunetv2``'s ``generate_dataset_json``)."""
    return {
        "channel_names": dict(CHANNEL_NAMES),
        "labels": dict(LABELS),
        "numTraining": num_training,
        "file_ending": FILE_ENDING,
        "name": DATASET_NAME,
        "description": "Synthetic abdominal CT phantom written by 'medseg data synth abdomen'. Two "
                       "co-registered phases per case: channel 0000 = non-contrast CT, channel 0001 = "
                       "portal-venous contrast CT (int16 HU; both named 'CT' so that CT normalisation "
                       "applies to each). Labels: liver, kidney (both kidneys, parenchyma), spleen, and a "
                       "small hypo-enhancing liver tumour absent in some cases. Some cases are stored in "
                       "RAS or LPI orientation. labelsTs/ holds the labels of the imagesTs/ cases.",
        "reference": "medseg synthetic generator (medseg/data/synth_abdomen.py)",
        "licence": "synthetic, generated by medseg",
        "release": "1.0",
    }


def synth_abdomen(out: str | os.PathLike = "data/synthetic/nnUNet_raw", cases: int = 16, test_cases: int = 4,
                  size: int = 96, slices: int = 32, seed: int = 0, *, force: bool = False,
                  progress: bool = False) -> Path:
    """Write ``out/Dataset901_SynthAbdomen`` (nnU-Net v2 raw format); returns that folder.

    ``out`` is nnU-Net's ``nnUNet_raw``: only the dataset folder is written. It is
    built under a temporary name and renamed when complete; an existing non-empty
    dataset folder is replaced only with ``force`` and only if an earlier synth
    wrote it (as for ``synth pancreas``).
    """
    from tqdm import tqdm

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    if out.name == DATASET_FOLDER or (out / "dataset.json").exists():
        raise DataError(f"{out}: is a dataset folder; --out is the folder that holds datasets (nnU-Net's "
                        f"nnUNet_raw), the dataset is written to OUT/{DATASET_FOLDER}")
    if cases < 1 or test_cases < 0:
        raise DataError(f"--cases must be at least 1 and --test-cases at least 0 (got {cases}, {test_cases})")
    folder = out / DATASET_FOLDER
    _check_out(folder, force)
    with atomic_dir(folder) as tmp:
        dirs = {name: tmp / name for name in ("imagesTr", "labelsTr", "imagesTs", "labelsTs")}
        for d in dirs.values():
            d.mkdir()
        for i in tqdm(range(cases + test_cases), desc="synth abdomen", unit="case",
                      disable=None if progress else True):
            ph = abdomen_phantom(i, seed=seed, size=size, slices=slices)
            split = "Tr" if i < cases else "Ts"
            _write_case(ph, dirs[f"images{split}"], dirs[f"labels{split}"])
        (tmp / "dataset.json").write_text(json.dumps(dataset_json(cases), indent=4) + "\n")
        params = {"dataset": "abdomen", "format": "nnunetv2", "cases": cases, "test_cases": test_cases,
                  "size": size, "slices": slices, "seed": seed}
        (tmp / MARKER).write_text(json.dumps(params, indent=1, sort_keys=True) + "\n")
        mark_folder(tmp, "synth")
    return folder
