"""NSD by the reference definition (Nikolov et al.; DeepMind's ``surface-distance``), against hand
computations and against values of the reference implementation.

The reference surface: one surface element per 2×2×2 (2D: 2×2) neighbourhood of voxels that is
neither all foreground nor all background — i.e. on the grid of voxel *corners*, half a voxel
off the voxel centres — weighted by the area (2D: length) of the marching-cubes (squares)
surface through it, with the grid's spacing. For a mask that is a box of voxels, spacing 1:

* 3D: a face element (4 foreground voxels on one side) is a unit square, area 1; an edge element
  (2 voxels along an edge) a 1 × √2/2 rectangle, area √2/2; a corner element (1 voxel) the
  triangle through the midpoints of the corner's three edges, side √2/2, area (√3/4)(1/2) = √3/8.
  An a×a×a cube has 6(a−1)² face, 12(a−1) edge and 8 corner elements, so its area is
  S(a) = 6(a−1)² + 6√2 (a−1) + √3.
* 2D: a side element (2 pixels) is a straight segment of the pixel pitch (sx along x, sy along
  y); a corner element (1 pixel) the diagonal through the midpoints of two cell sides,
  ½√(sx² + sy²). An r×c rectangle (r rows along y) has 2(c−1) sides along x, 2(r−1) along y and
  4 corners: L(r, c) = 2(c−1) sx + 2(r−1) sy + 2√(sx² + sy²).

NSD = (label area within τ of the predicted surface + predicted area within τ of the label
surface) / (label area + predicted area); distances between element centres.
"""

import math

import pytest
import torch

from medseg.training.metrics import SegmentationScores

SQRT2, SQRT3 = math.sqrt(2.0), math.sqrt(3.0)


def nsd(pred, label, spacing, tolerance):
    return SegmentationScores(nsd_tolerance_mm=tolerance).score("c", pred, label, spacing).nsd


def monai_voxel_nsd(pred, label, spacing, tolerance):
    """MONAI's default variant (boundary voxels, unweighted): what medseg computed before."""
    from monai.metrics import compute_surface_dice

    return float(compute_surface_dice(pred[None, None].float(), label[None, None].float(), [tolerance],
                                      include_background=True, spacing=list(spacing), use_subvoxels=False))


def cube_area(a):
    return 6 * (a - 1) ** 2 + 6 * SQRT2 * (a - 1) + SQRT3


def test_cube_against_the_cube_grown_by_one_voxel():
    """Label: the 4×4×4 cube; prediction: the 6×6×6 cube around it (one voxel more on every
    side); spacing 1, τ = 1.2 (between 1 and √2).

    Every element of the label surface has a predicted element one voxel straight out (distance
    1 ≤ τ): all S(4) counts. Of the predicted surface, the face elements have a label element one
    voxel straight in (distance 1); its edge elements are √2 and its corners √3 from the nearest
    label element (> τ). So the predicted area within τ is the faces' 6·5² = 150, and

        NSD = (S(4) + 150) / (S(4) + S(6)),  S(4) = 54 + 18√2 + √3,  S(6) = 150 + 30√2 + √3
            = (204 + 18√2 + √3) / (204 + 48√2 + 2√3) ≈ 0.83963.

    The voxel variant gives (56 + 6·4²) / (56 + 152) = 152/208 ≈ 0.7308 instead: boundary voxels
    4³ − 2³ = 56 and 6³ − 4³ = 152, all label ones within 1 voxel, of the predicted ones only the
    6·4² face voxels.
    """
    label = torch.zeros(12, 12, 12, dtype=torch.uint8)
    pred = torch.zeros_like(label)
    label[4:8, 4:8, 4:8] = 1
    pred[3:9, 3:9, 3:9] = 1
    assert cube_area(4) == pytest.approx(54 + 18 * SQRT2 + SQRT3)
    expected = (cube_area(4) + 6 * 5 ** 2) / (cube_area(4) + cube_area(6))
    assert expected == pytest.approx((204 + 18 * SQRT2 + SQRT3) / (204 + 48 * SQRT2 + 2 * SQRT3))
    assert nsd(pred, label, (1.0, 1.0, 1.0), 1.2) == pytest.approx(expected, abs=1e-6)
    assert nsd(label, pred, (1.0, 1.0, 1.0), 1.2) == pytest.approx(expected, abs=1e-6)  # symmetric
    assert monai_voxel_nsd(pred, label, (1.0, 1.0, 1.0), 1.2) == pytest.approx(152 / 208, abs=1e-6)
    # τ ≥ √3: every element of both surfaces is within τ
    assert nsd(pred, label, (1.0, 1.0, 1.0), 1.8) == pytest.approx(1.0, abs=1e-6)


def test_square_against_the_square_grown_by_one_pixel_2d():
    """2D, spacing 1, τ = 1.2: label the 3×5 rectangle, prediction the 5×7 one around it.

    All of the label contour L(3, 5) = 8 + 4 + 2√2 is within 1 of the predicted contour; of the
    predicted contour L(5, 7) = 12 + 8 + 2√2 all but the 4 corner elements (√2 from the label's
    corners; length √2/2 each, 2√2 together):

        NSD = (L(3,5) + L(5,7) − 2√2) / (L(3,5) + L(5,7)) = (32 + 2√2) / (32 + 4√2) ≈ 0.92489.
    """
    label = torch.zeros(12, 12, dtype=torch.uint8)
    pred = torch.zeros_like(label)
    label[4:7, 4:9] = 1
    pred[3:8, 3:10] = 1
    assert nsd(pred, label, (1.0, 1.0), 1.2) == pytest.approx((32 + 2 * SQRT2) / (32 + 4 * SQRT2), abs=1e-6)
    # the voxel variant: 12 + 20 boundary pixels, all but the prediction's 4 corners within 1
    assert monai_voxel_nsd(pred, label, (1.0, 1.0), 1.2) == pytest.approx(28 / 32, abs=1e-6)


def test_anisotropic_pixels_weight_the_contour_by_length_2d():
    """The same rectangles with spacing (sy, sx) = (2, 1) — rows 2 units apart — and τ = 1.5.

    Corner elements are ½√(1 + 4) = √5/2 long; L(3,5) = 2·4·1 + 2·2·2 + 2√5 = 16 + 2√5 and
    L(5,7) = 12 + 16 + 2√5. Elements on the left/right sides (vertical segments, length sy = 2)
    move by sx = 1 between the two contours (≤ τ), those on the top/bottom (horizontal, length
    1) by sy = 2 (> τ). Label: its 2·2 vertical elements (8) and its corners (1 from the
    prediction's side elements) count, 8 + 2√5; prediction: its 2·4 vertical elements (16); its
    corners are √5 from the label's.

        NSD = (8 + 2√5 + 16) / (16 + 2√5 + 28 + 2√5) = (24 + 2√5) / (44 + 4√5) ≈ 0.53778.

    With the spacing read in the other order (sy, sx) = (1, 2) the value differs.
    """
    label = torch.zeros(12, 12, dtype=torch.uint8)
    pred = torch.zeros_like(label)
    label[4:7, 4:9] = 1
    pred[3:8, 3:10] = 1
    s5 = math.sqrt(5.0)
    expected = (24 + 2 * s5) / (44 + 4 * s5)
    assert nsd(pred, label, (2.0, 1.0), 1.5) == pytest.approx(expected, abs=1e-6)
    assert nsd(pred, label, (1.0, 2.0), 1.5) != pytest.approx(expected, abs=1e-3)


def test_a_frame_is_a_2d_contour_not_a_one_slice_slab():
    """A BAGLS frame arrives as (1, H, W) with spacing (1, 1): it is scored in 2D, with contour
    lengths — the square case above exactly. Scored as a one-slice 3D slab (spacing (1, 1, 1)),
    the top and bottom faces of the slab would be surface too (every pixel), and the value
    would differ."""
    label = torch.zeros(1, 12, 12, dtype=torch.uint8)
    pred = torch.zeros_like(label)
    label[0, 4:7, 4:9] = 1
    pred[0, 3:8, 3:10] = 1
    frame = nsd(pred, label, (1.0, 1.0), 1.2)
    assert frame == pytest.approx((32 + 2 * SQRT2) / (32 + 4 * SQRT2), abs=1e-6)
    slab = nsd(pred, label, (1.0, 1.0, 1.0), 1.2)
    assert slab != pytest.approx(frame, abs=1e-3)


def test_plates_one_slice_apart_share_a_face():
    """Two 4×4 plates one voxel thick in adjacent slices, spacing (z, y, x) = (3, 1, 0.5), τ = 2.

    Each plate's surface is two equal layers of elements, below and above it (areas A, A, by
    symmetry). The label's upper layer *is* the prediction's lower layer — the plane between
    the two slices, distance 0 — while the other layers are a whole slice (3 > τ) from anything
    of the other surface. NSD = (A + A) / (4A) = 1/2 whatever A is. (The voxel variant gave 0:
    its surfaces are the voxel centres, every one 3 apart.) With the z spacing 0.5 every element
    is within τ: NSD = 1.
    """
    label = torch.zeros(6, 8, 8, dtype=torch.uint8)
    pred = torch.zeros_like(label)
    label[2, 2:6, 2:6] = 1
    pred[3, 2:6, 2:6] = 1
    assert nsd(pred, label, (3.0, 1.0, 0.5), 2.0) == pytest.approx(0.5, abs=1e-6)
    assert monai_voxel_nsd(pred, label, (3.0, 1.0, 0.5), 2.0) == 0.0
    assert nsd(pred, label, (0.5, 1.0, 3.0), 2.0) == pytest.approx(1.0, abs=1e-6)


def blob(shape, centre, radii):
    """A filled ellipsoid (voxel units) as a uint8 mask."""
    grids = torch.meshgrid(*[torch.arange(n, dtype=torch.float32) for n in shape], indexing="ij")
    r2 = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii))
    return (r2 <= 1.0).to(torch.uint8)


# (shape, label centre, label radii, prediction centre, prediction radii, spacing, τ, NSD of
# DeepMind's surface-distance 0.1: compute_surface_dice_at_tolerance(compute_surface_distances(
# label, pred, spacing), τ) on the same masks, built with numpy as in blob())
REFERENCE = [
    ((10, 24, 28), (4.5, 11, 13), (3, 7, 9), (5.2, 12, 11), (3.5, 6, 10), (3.0, 0.8, 0.5), 2.0, 0.9369859868271564),
    ((12, 20, 20), (6, 9, 10), (4, 6, 5), (6, 10, 9), (3, 6, 6), (3.27, 3.27, 3.0), 2.0, 0.47051272598127025),
    ((40, 36), (20, 18), (12, 9), (22, 17), (10, 11), (1.0, 1.0), 2.0, 0.6772812490217435),
    ((40, 36), (20, 18), (12, 9), (21, 19), (13, 8), (2.0, 0.7), 1.0, 0.664118284750558),
]


@pytest.mark.parametrize("shape, c1, r1, c2, r2, spacing, tol, expected", REFERENCE)
def test_matches_the_reference_implementation(shape, c1, r1, c2, r2, spacing, tol, expected):
    label, pred = blob(shape, c1, r1), blob(shape, c2, r2)
    assert nsd(pred, label, spacing, tol) == pytest.approx(expected, abs=1e-6)
