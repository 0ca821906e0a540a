"""CT reading: DICOM series (order, HU, geometry, nesting), single files, NIfTI, bad files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from medseg.data import pancreas_phantom, read_ct_volume, synth_pancreas
from medseg.data.ct import find_dicom_files
from medseg.errors import DataError

SIZE, SLICES = 32, 8


@pytest.fixture(scope="module")
def tcia(tmp_path_factory) -> Path:
    # 3 cases cover the three RescaleSlope/Intercept/PixelRepresentation variants
    return synth_pancreas(tmp_path_factory.mktemp("ct") / "tcia", cases=3, size=SIZE, slices=SLICES, seed=3)


def patient(root: Path, n: int) -> Path:
    return root / "Pancreas-CT" / f"PANCREAS_{n:04d}"


def series_dir(root: Path, n: int) -> Path:
    return next(patient(root, n).rglob("*.dcm")).parent


def test_hu_round_trip_within_quantisation(tcia):
    rescales = set()
    for i in range(3):
        hu, geom = read_ct_volume(patient(tcia, i + 1))
        ph = pancreas_phantom(i, seed=3, size=SIZE, slices=SLICES)
        slope = ph.rescale[0]
        assert hu.dtype == np.float32 and hu.shape == (SLICES, SIZE, SIZE)
        assert np.abs(hu - ph.hu).max() <= slope / 2 + 1e-3
        ds = pydicom.dcmread(next(series_dir(tcia, i + 1).glob("*.dcm")))
        assert ds.BitsAllocated == 16
        assert float(ds.RescaleSlope) == slope
        rescales.add((float(ds.RescaleSlope), float(ds.RescaleIntercept), int(ds.PixelRepresentation)))
    assert len(rescales) == 3  # slope, intercept and signedness vary per case


def test_geometry_is_what_simpleitk_reports(tcia):
    for n in (1, 2, 3):
        _, geom = read_ct_volume(patient(tcia, n))
        reader = sitk.ImageSeriesReader()
        d = str(series_dir(tcia, n))
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(d))
        img = reader.Execute()
        assert geom.size == img.GetSize()
        np.testing.assert_allclose(geom.origin, img.GetOrigin(), atol=1e-6)
        np.testing.assert_allclose(geom.spacing, img.GetSpacing(), rtol=1e-9)
        np.testing.assert_allclose(geom.direction, img.GetDirection(), atol=1e-9)
        hu, _ = read_ct_volume(patient(tcia, n))
        np.testing.assert_allclose(hu, sitk.GetArrayFromImage(img).astype(np.float32), atol=1e-3)


def test_slices_ordered_by_position_not_file_name(tcia, tmp_path):
    # patient 2 is written with reversed numbering: 1-001.dcm is the top slice
    s = series_dir(tcia, 2)
    first = pydicom.dcmread(s / "1-001.dcm")
    last = pydicom.dcmread(s / f"1-{SLICES:03d}.dcm")
    assert float(first.ImagePositionPatient[2]) > float(last.ImagePositionPatient[2])
    ref, _ = read_ct_volume(patient(tcia, 2))
    # shuffle the file names completely: the volume must not change
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    files = sorted(s.glob("*.dcm"))
    perm = np.random.default_rng(0).permutation(len(files))
    for f, k in zip(files, perm):
        shutil.copy(f, shuffled / f"IMG{k:05d}")
    hu, geom = read_ct_volume(shuffled)
    np.testing.assert_array_equal(hu, ref)
    # ascending positions along the slice normal (z)
    assert geom.direction[8] == 1.0


def test_series_found_at_any_depth(tcia, tmp_path):
    ref, ref_geom = read_ct_volume(patient(tcia, 1))
    deep = tmp_path / "PANCREAS_0001" / "a" / "b" / "c" / "d"
    shutil.copytree(series_dir(tcia, 1), deep)
    (tmp_path / "PANCREAS_0001" / "a" / "notes.txt").write_text("a file outside the series folder\n")
    hu, geom = read_ct_volume(tmp_path / "PANCREAS_0001")
    np.testing.assert_array_equal(hu, ref)
    assert geom == ref_geom


def test_single_dicom_file_is_one_slice_volume(tcia):
    hu, _ = read_ct_volume(patient(tcia, 1))
    s = series_dir(tcia, 1)
    # patient 1 (index 0) is numbered bottom-up: 1-003.dcm is the third slice
    one, geom = read_ct_volume(s / "1-003.dcm")
    assert one.shape == (1, SIZE, SIZE) and geom.size == (SIZE, SIZE, 1)
    np.testing.assert_array_equal(one[0], hu[2])


def test_nifti_volume_and_nan(tmp_path):
    arr = np.random.default_rng(0).normal(0, 100, (4, 5, 6)).astype(np.float32)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.8, 0.9, 2.5))
    img.SetOrigin((10.0, -20.0, 30.0))
    sitk.WriteImage(img, str(tmp_path / "ok.nii.gz"))
    hu, geom = read_ct_volume(tmp_path / "ok.nii.gz")
    np.testing.assert_allclose(hu, arr, atol=1e-4)
    assert geom.size == (6, 5, 4)
    np.testing.assert_allclose(geom.spacing, (0.8, 0.9, 2.5), rtol=1e-6)
    arr[1, 2, 3] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(tmp_path / "nan.nii.gz"))
    with pytest.raises(DataError, match=r"nan\.nii\.gz: volume contains 1 NaN"):
        read_ct_volume(tmp_path / "nan.nii.gz")


def test_unreadable_nifti(tmp_path):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataError, match=r"broken\.nii\.gz: unreadable or truncated"):
        read_ct_volume(bad)


def _copy_series(tcia: Path, dst: Path) -> Path:
    shutil.copytree(series_dir(tcia, 1), dst)
    return dst


def test_truncated_dicom_names_the_file(tcia, tmp_path):
    s = _copy_series(tcia, tmp_path / "s")
    victim = s / "1-005.dcm"
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 300])
    with pytest.raises(DataError) as err:
        read_ct_volume(s)
    msg = str(err.value)
    assert msg.startswith(str(victim)) and "truncated" in msg and "\n" not in msg


def test_truncated_header_names_the_file(tcia, tmp_path):
    s = _copy_series(tcia, tmp_path / "s")
    victim = s / "1-002.dcm"
    victim.write_bytes(victim.read_bytes()[:400])
    with pytest.raises(DataError, match=str(victim).replace(".", r"\.") + ": .*truncated"):
        read_ct_volume(s)


def test_non_dicom_file_among_slices(tcia, tmp_path):
    s = _copy_series(tcia, tmp_path / "s")
    (s / "1-099.dcm").write_text("this is not DICOM\n")
    with pytest.raises(DataError, match=r"1-099\.dcm: not a DICOM file"):
        read_ct_volume(s)


def test_hidden_files_and_dicomdir_like_objects_are_ignored(tcia, tmp_path):
    s = _copy_series(tcia, tmp_path / "s")
    (s / ".DS_Store").write_bytes(b"\0\1\2")
    ref, _ = read_ct_volume(series_dir(tcia, 1))
    hu, _ = read_ct_volume(s)
    np.testing.assert_array_equal(hu, ref)
    assert len(find_dicom_files(s)) == SLICES


def test_two_series_below_one_folder(tcia, tmp_path):
    root = tmp_path / "two"
    shutil.copytree(series_dir(tcia, 1), root / "a")
    shutil.copytree(series_dir(tcia, 2), root / "b")
    with pytest.raises(DataError, match="2 DICOM series"):
        read_ct_volume(root)


def test_missing_and_empty(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_ct_volume(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty folder"):
        read_ct_volume(tmp_path / "empty")


def test_missing_slice_is_detected(tcia, tmp_path):
    s = _copy_series(tcia, tmp_path / "s")
    (s / "1-004.dcm").unlink()
    with pytest.raises(DataError, match="slice spacing is not uniform"):
        read_ct_volume(s)
