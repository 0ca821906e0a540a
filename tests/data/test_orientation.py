"""Orientation codes and reorientation: permutations and flips only, checked against SimpleITK."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from medseg.data.geometry import Geometry
from medseg.data.orientation import (TRAINING_ORIENTATION, check_code, orientation_of, reorientation,
                                     to_training_orientation)
from medseg.errors import DataError

CODES = ["LPS", "RAS", "LAS", "RPI", "PLS", "SLP", "IAR", "ASL"]


@pytest.fixture(scope="module")
def lps_image() -> sitk.Image:
    arr = np.random.default_rng(0).integers(-1000, 1000, size=(5, 6, 7)).astype(np.int16)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.7, 0.8, 2.5))
    img.SetOrigin((10.0, -20.0, 30.0))
    return img


@pytest.mark.parametrize("code", CODES)
def test_reorientation_matches_simpleitk_dicomorient(lps_image, code):
    """To any code and back: the arrays and geometries SimpleITK's DICOMOrient gives."""
    turned = sitk.DICOMOrient(lps_image, code)
    geometry, array = Geometry.from_sitk(turned), sitk.GetArrayFromImage(turned)
    assert orientation_of(geometry) == code
    back = reorientation(geometry)  # to LPS
    np.testing.assert_array_equal(back.apply(array), sitk.GetArrayFromImage(lps_image))
    np.testing.assert_allclose(back.target.origin, lps_image.GetOrigin(), atol=1e-9)
    np.testing.assert_allclose(back.target.spacing, lps_image.GetSpacing())
    np.testing.assert_allclose(back.target.direction, lps_image.GetDirection(), atol=1e-12)
    np.testing.assert_array_equal(back.undo(back.apply(array)), array)
    there = reorientation(Geometry.from_sitk(lps_image), code)
    np.testing.assert_array_equal(there.apply(sitk.GetArrayFromImage(lps_image)), array)
    np.testing.assert_allclose(there.target.origin, turned.GetOrigin(), atol=1e-9)
    np.testing.assert_allclose(there.target.direction, turned.GetDirection(), atol=1e-12)


def test_leading_axes_are_kept(lps_image):
    turned = sitk.DICOMOrient(lps_image, "RAS")
    array = sitk.GetArrayFromImage(turned)
    stacked = np.stack([array, array * 2])  # e.g. two channels or two class maps
    out, r = to_training_orientation(stacked, Geometry.from_sitk(turned))
    lps = sitk.GetArrayFromImage(lps_image)
    np.testing.assert_array_equal(out[1], lps * 2)
    np.testing.assert_array_equal(r.undo(out), stacked)


def test_identity_is_a_no_op(lps_image):
    g = Geometry.from_sitk(lps_image)
    r = reorientation(g)
    arr = sitk.GetArrayFromImage(lps_image)
    assert r.is_identity and r.target == g and r.apply(arr) is arr and TRAINING_ORIENTATION == "LPS"


def _rotated(img: sitk.Image, degrees: float) -> Geometry:
    a = np.radians(degrees)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    g = Geometry.from_sitk(img)
    return Geometry(g.origin, g.spacing, tuple(rot.ravel()), g.size)


def test_oblique_direction_is_refused_naming_the_file(lps_image):
    with pytest.raises(DataError) as exc:
        reorientation(_rotated(lps_image, 20.0), what="scan.nii.gz")
    msg = str(exc.value)
    assert msg.startswith("scan.nii.gz: oblique orientation") and "20.0°" in msg and "\n" not in msg


def test_small_obliquity_is_kept_exactly_in_the_direction(lps_image):
    """Within the tolerance the axes are matched and the physical geometry kept (no resampling)."""
    g = _rotated(lps_image, 0.5)
    r = reorientation(g, "RAS")
    assert r.flip == (True, True, False)
    # the same physical voxel: target index (0, 0, 0) is source index (6, 5, 0)
    np.testing.assert_allclose(r.target.index_to_physical([0, 0, 0]), g.index_to_physical([6, 5, 0]))
    np.testing.assert_allclose(r.target.index_to_physical([1, 2, 3]), g.index_to_physical([5, 3, 3]))


@pytest.mark.parametrize("bad", ["LPX", "LLS", "LP", "RAI2", "SPA "])
def test_bad_codes_are_refused(bad):
    with pytest.raises(ValueError, match="not a code"):
        check_code(bad)
    assert check_code("ras") == "RAS"
