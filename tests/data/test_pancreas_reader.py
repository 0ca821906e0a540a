"""Pancreas-CT cases: discovery in both layouts, labels matched in physical space."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from medseg.data import (Geometry, PancreasCase, detect_layout, discover_pancreas, load_pancreas_case,
                         pancreas_phantom, synth_pancreas)
from medseg.data.pancreas import match_axes, reorient_to
from medseg.data.synth_pancreas import label_storage
from medseg.errors import DataError

SIZE, SLICES, SEED = 32, 8, 5


@pytest.fixture(scope="module")
def tcia(tmp_path_factory) -> Path:
    return synth_pancreas(tmp_path_factory.mktemp("pan") / "tcia", cases=4, size=SIZE, slices=SLICES, seed=SEED)


@pytest.fixture(scope="module")
def msd(tmp_path_factory) -> Path:
    return synth_pancreas(tmp_path_factory.mktemp("pan") / "msd", layout="msd", cases=3, size=SIZE,
                          slices=SLICES, seed=SEED)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_tcia_discovery_pairs_by_number(tcia):
    assert detect_layout(tcia, "pancreas") == "tcia"
    refs = discover_pancreas(tcia)
    assert [r.case_id for r in refs] == [f"PANCREAS_{n:04d}" for n in (1, 2, 3, 4)]
    for n, r in enumerate(refs, 1):
        assert r.image == tcia / "Pancreas-CT" / f"PANCREAS_{n:04d}"
        assert r.label.name == f"label{n:04d}.nii.gz"


def test_tcia_cases_aligned_with_generator_truth(tcia):
    storages = set()
    for i, ref in enumerate(discover_pancreas(tcia)):
        case = load_pancreas_case(ref.image, ref.label)
        ph = pancreas_phantom(i, seed=SEED, size=SIZE, slices=SLICES)
        assert isinstance(case, PancreasCase) and case.case_id == ref.case_id
        assert case.image.shape == case.label.shape == (SLICES, SIZE, SIZE)
        assert case.label.dtype == np.uint8 and set(np.unique(case.label)) <= {0, 1}
        truth = ph.label > 0
        assert truth.any()
        assert dice(case.label > 0, truth) == 1.0
        np.testing.assert_allclose(case.spacing, ph.geometry.spacing[::-1], rtol=1e-6)
        storages.add(label_storage(i))
    assert storages == {"same", "flip_z", "swap_xy"}


def test_label_stored_flipped_along_z_is_reoriented(tcia):
    ref = discover_pancreas(tcia)[1]
    assert label_storage(1) == "flip_z"
    stored = sitk.ReadImage(str(ref.label))
    assert stored.GetDirection()[8] == -1.0  # z axis reversed relative to the DICOM slices
    raw = sitk.GetArrayFromImage(stored)
    truth = (pancreas_phantom(1, seed=SEED, size=SIZE, slices=SLICES).label > 0)
    assert dice(raw > 0, truth) < 0.9  # read naively it would be misaligned
    case = load_pancreas_case(ref.image, ref.label)
    np.testing.assert_array_equal(case.label, truth.astype(np.uint8))
    # and the target sits on brighter-than-fat tissue of the image, slice by slice
    assert case.image[case.label > 0].mean() > -50


def test_every_axis_permutation_and_flip_is_matched():
    rng = np.random.default_rng(0)
    image = Geometry((-10.0, 5.0, 20.0), (0.7, 0.8, 2.5), (1, 0, 0, 0, 1, 0, 0, 0, 1), (5, 4, 3))
    truth = rng.integers(0, 2, image.shape).astype(np.uint8)
    truth_img = image.to_sitk(truth)
    for perm in itertools.permutations(range(3)):
        for flips in itertools.product((False, True), repeat=3):
            # the label image: axis j of the label is image axis perm[j], maybe reversed
            filt = sitk.PermuteAxesImageFilter()
            filt.SetOrder(list(perm))
            lab = filt.Execute(truth_img)
            lab = sitk.Flip(lab, list(flips), flipAboutOrigin=False)
            geom = Geometry.from_sitk(lab)
            match = match_axes(geom, image)
            assert match is not None, (perm, flips)
            out = reorient_to(sitk.GetArrayFromImage(lab), *match)
            np.testing.assert_array_equal(out, truth, err_msg=str((perm, flips)))


def _rewrite_label(src: Path, dst: Path, **changes) -> None:
    img = sitk.ReadImage(str(src))
    if "origin_shift" in changes:
        sp = img.GetSpacing()
        img.SetOrigin(tuple(o + k * s for o, k, s in zip(img.GetOrigin(), changes["origin_shift"], sp)))
    if "spacing" in changes:
        img.SetSpacing(changes["spacing"])
    if "array" in changes:
        new = sitk.GetImageFromArray(changes["array"])
        new.CopyInformation(img)
        img = new
    sitk.WriteImage(img, str(dst))


@pytest.mark.parametrize("change", [
    {"origin_shift": (0, 0, 3)},
    {"spacing": (1.0, 1.0, 1.0)},
])
def test_label_on_another_grid_names_the_case(tcia, tmp_path, change):
    ref = discover_pancreas(tcia)[0]
    bad = tmp_path / "label0001.nii.gz"
    _rewrite_label(ref.label, bad, **change)
    with pytest.raises(DataError) as err:
        load_pancreas_case(ref.image, bad, case_id=ref.case_id)
    msg = str(err.value)
    assert msg.startswith(str(bad)) and "PANCREAS_0001" in msg and "does not match" in msg


def test_label_of_another_size(tcia, tmp_path):
    ref = discover_pancreas(tcia)[0]
    img = sitk.ReadImage(str(ref.label))
    small = img[:, :, : SLICES - 2]
    bad = tmp_path / "label0001.nii.gz"
    sitk.WriteImage(small, str(bad))
    with pytest.raises(DataError, match="PANCREAS_0001"):
        load_pancreas_case(ref.image, bad, case_id="PANCREAS_0001")


def test_label_values_outside_expected_set(tcia, tmp_path):
    ref = discover_pancreas(tcia)[0]
    arr = sitk.GetArrayFromImage(sitk.ReadImage(str(ref.label)))
    arr[0, 0, 0] = 7
    bad = tmp_path / "label0001.nii.gz"
    _rewrite_label(ref.label, bad, array=arr)
    with pytest.raises(DataError, match=r"label values \[7\] outside the expected set \[0, 1, 2\]"):
        load_pancreas_case(ref.image, bad)
    arr[0, 0, 0] = 2
    _rewrite_label(ref.label, bad, array=arr)
    with pytest.raises(DataError, match=r"label values \[2\] outside the expected set \[0, 1\]"):
        load_pancreas_case(ref.image, bad, label_values=(0, 1))


def test_patient_without_label(tcia, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(tcia, root)
    (root / "TCIA_pancreas_labels-02-05-2017" / "label0003.nii.gz").unlink()
    with pytest.raises(DataError) as err:
        discover_pancreas(root)
    assert "PANCREAS_0003" in str(err.value) and "no label" in str(err.value)
    refs = discover_pancreas(root, require_labels=False)
    assert [r.label is None for r in refs] == [False, False, True, False]


def test_pairing_uses_numbers_not_listing_order(tcia, tmp_path):
    root = tmp_path / "gappy"
    shutil.copytree(tcia, root)
    # patient 2 withdrawn (as PANCREAS_0025/0070 in the real set): label 2 has no patient
    shutil.rmtree(root / "Pancreas-CT" / "PANCREAS_0002")
    refs = discover_pancreas(root)
    assert [(r.case_id, r.label.name) for r in refs] == [
        ("PANCREAS_0001", "label0001.nii.gz"), ("PANCREAS_0003", "label0003.nii.gz"),
        ("PANCREAS_0004", "label0004.nii.gz")]


def test_unlabelled_case(tcia):
    ref = discover_pancreas(tcia)[0]
    case = load_pancreas_case(ref.image)
    assert case.label is None and case.case_id == "PANCREAS_0001"


def test_msd_layout(msd):
    assert detect_layout(msd, "pancreas") == "msd"
    meta = json.loads((msd / "dataset.json").read_text())
    assert {"name", "labels", "modality", "numTraining", "training"} <= set(meta)
    assert meta["numTraining"] == 3 and meta["labels"]["2"]
    refs = discover_pancreas(msd)
    assert [r.case_id for r in refs] == ["pancreas_001", "pancreas_002", "pancreas_003"]
    saw_tumour = False
    for i, ref in enumerate(refs):
        ph = pancreas_phantom(i, seed=SEED, size=SIZE, slices=SLICES)
        merged = load_pancreas_case(ref.image, ref.label)
        two_classes = load_pancreas_case(ref.image, ref.label, merge_tumour=False)
        np.testing.assert_array_equal(merged.label, (ph.label > 0).astype(np.uint8))
        np.testing.assert_array_equal(two_classes.label, ph.label.astype(np.uint8))  # 1 pancreas, 2 tumour
        assert np.abs(merged.image - ph.hu).max() <= 0.5 + 1e-3  # int16 NIfTI
        saw_tumour |= bool((ph.label == 2).any())
    assert saw_tumour


def test_msd_image_without_label(msd, tmp_path):
    root = tmp_path / "msd"
    shutil.copytree(msd, root)
    (root / "labelsTr" / "pancreas_002.nii.gz").unlink()
    with pytest.raises(DataError, match=r"pancreas_002\.nii\.gz: image has no label"):
        discover_pancreas(root)


def test_msd_nan_in_image(msd, tmp_path):
    ref = discover_pancreas(msd)[0]
    img = sitk.Cast(sitk.ReadImage(str(ref.image)), sitk.sitkFloat32)
    arr = sitk.GetArrayFromImage(img)
    arr[2, 3, 4] = np.nan
    bad = sitk.GetImageFromArray(arr)
    bad.CopyInformation(img)
    path = tmp_path / "pancreas_001.nii.gz"
    sitk.WriteImage(bad, str(path))
    with pytest.raises(DataError, match=r"pancreas_001\.nii\.gz: volume contains 1 NaN"):
        load_pancreas_case(path, ref.label)


def test_empty_or_missing_root(tmp_path):
    with pytest.raises(DataError, match="dataset root not found"):
        discover_pancreas(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty folder"):
        discover_pancreas(tmp_path / "empty")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match="no Pancreas-CT layout found"):
        detect_layout(tmp_path / "other", "pancreas")


@pytest.mark.parametrize("image_code, label_code", [("RAS", "RAS"), ("LAS", "LPS"), ("PLS", "SAL")])
def test_case_stored_in_another_orientation_is_read_in_the_training_one(msd, tmp_path, image_code,
                                                                         label_code):
    """Image (and label) stored RAS, LAS or with permuted axes: the same arrays as the LPS case."""
    ref = discover_pancreas(msd)[0]
    lps = load_pancreas_case(ref.image, ref.label)
    paths = {}
    for what, src, code in (("image", ref.image, image_code), ("label", ref.label, label_code)):
        paths[what] = tmp_path / f"{what}.nii.gz"
        sitk.WriteImage(sitk.DICOMOrient(sitk.ReadImage(str(src)), code), str(paths[what]))
    turned = load_pancreas_case(paths["image"], paths["label"], case_id=ref.case_id)
    np.testing.assert_array_equal(turned.image, lps.image)
    np.testing.assert_array_equal(turned.label, lps.label)
    assert turned.geometry.size == lps.geometry.size
    np.testing.assert_allclose(turned.geometry.origin, lps.geometry.origin, atol=1e-4)
    np.testing.assert_allclose(turned.geometry.direction, lps.geometry.direction, atol=1e-9)
