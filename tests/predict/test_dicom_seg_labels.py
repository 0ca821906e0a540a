"""DICOM SEG with several labels (issue 17.3): one segment per label, segment number = label
value, named from dataset.json, a SNOMED CT property where medseg knows the structure (laterality
as a type modifier), else the generic Tissue; read back with highdicom, checked with dciodvfy
where dicom3tools is installed. Binary checkpoints keep their one segment (test_outputs.py,
test_dicom_seg.py). Marked slow: every test writes a SEG."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from medseg.predict import predict
from medseg.predict.writers import segment_property, write_dicom_seg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from nnunet_helpers import write_nnunet  # noqa: E402

pytestmark = pytest.mark.slow

DCIODVFY = shutil.which("dciodvfy")


def _sources_in_z_order(series: Path) -> list[Path]:
    files = sorted(series.glob("*.dcm"))
    z = [float(pydicom.dcmread(str(f), stop_before_pixels=True).ImagePositionPatient[2]) for f in files]
    return [files[i] for i in np.argsort(z)]


def _seg_labels(seg_path: Path, sources: list[Path], segments: list[int]) -> np.ndarray:
    """The SEG read back with highdicom as a label map, one (Y, X) slice per source file."""
    import highdicom as hd

    seg = hd.seg.segread(str(seg_path))
    out = []
    for p in sources:
        uid = str(pydicom.dcmread(str(p), stop_before_pixels=True).SOPInstanceUID)
        frame = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=[uid], segment_numbers=segments, combine_segments=True,
            ignore_spatial_locations=True, assert_missing_frames_are_empty=True)
        out.append(frame[0])
    return np.stack(out)


def _dciodvfy_errors(path: Path) -> list[str]:
    """dciodvfy's errors, and its warnings about attributes outside the SEG IOD (a code put
    where the standard does not place it)."""
    out = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (out.stdout + out.stderr).splitlines()
            if line.startswith("Error") or "not present in standard DICOM IOD" in line]


def _codes(item) -> tuple[str, str]:
    return str(item.CodeValue), str(item.CodingSchemeDesignator)


@pytest.fixture(scope="module")
def organ_ckpt(tmp_path_factory, make_ckpt) -> Path:
    """A one-channel CT nnunet checkpoint whose labels medseg partly knows by SNOMED CT."""
    d = tmp_path_factory.mktemp("organs")
    root = write_nnunet(d / "Dataset004_Organs", cases=4, labels=3, channels=("CT",))
    meta = json.loads((root / "dataset.json").read_text())
    meta["labels"] = {"background": 0, "liver": 1, "kidney_left": 2, "my structure": 3}
    (root / "dataset.json").write_text(json.dumps(meta))
    return make_ckpt(d / "organs.ckpt", "nnunet", root=root, cache_dir=d / "cache")


def test_one_segment_per_label_named_from_dataset_json(organ_ckpt, ct_series, tmp_path):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    out = tmp_path / "out"
    predict(organ_ckpt, [ct_series], out, fmt="both", device="cpu", progress=False)
    name = ct_series.resolve().name
    assert sorted(p.name for p in out.iterdir()) == [f"{name}.nii.gz", f"{name}_seg.dcm"]
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{name}.nii.gz")))
    assert len(np.unique(labels)) >= 3

    seg = hd.seg.segread(str(out / f"{name}_seg.dcm"))
    assert seg.SegmentationType == "BINARY" and seg.get_segment_numbers() == [1, 2, 3]
    items = {int(s.SegmentNumber): s for s in seg.SegmentSequence}
    assert [items[n].SegmentLabel for n in (1, 2, 3)] == ["liver", "kidney_left", "my structure"]
    types = [_codes(items[n].SegmentedPropertyTypeCodeSequence[0]) for n in (1, 2, 3)]
    assert types == [(codes.SCT.Liver.value, "SCT"), (codes.SCT.Kidney.value, "SCT"),
                     (codes.SCT.Tissue.value, "SCT")]
    modifier = items[2].SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence
    assert _codes(modifier[0]) == (codes.SCT.Left.value, "SCT")  # laterality: PS3.3 C.8.20.2
    assert "SegmentedPropertyTypeModifierCodeSequence" not in items[1].SegmentedPropertyTypeCodeSequence[0]
    assert _codes(items[3].SegmentedPropertyCategoryCodeSequence[0]) == (codes.SCT.Tissue.value, "SCT")
    assert len({tuple(items[n].RecommendedDisplayCIELabValue) for n in (1, 2, 3)}) == 3
    # the segments hold the label map, slice for slice
    read_back = _seg_labels(out / f"{name}_seg.dcm", _sources_in_z_order(ct_series), [1, 2, 3])
    np.testing.assert_array_equal(read_back, labels)
    if DCIODVFY:
        assert _dciodvfy_errors(out / f"{name}_seg.dcm") == []


def test_pancreas_with_tumour_as_two_classes(make_ckpt, ct_series, tmp_path):
    """A built-in dataset trained with several labels: per-class maps, one segment per label."""
    from pydicom.sr.codedict import codes

    ckpt = make_ckpt(tmp_path / "two_classes.ckpt", "pancreas", "data.merge_tumour=false")
    out = tmp_path / "out"
    predict(ckpt, [ct_series], out, fmt="both", save_probabilities=True, device="cpu", progress=False)
    name = ct_series.resolve().name
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{name}_mask.nii.gz", f"{name}_seg.dcm"] +
        [f"{name}_prob_{n}.nii.gz" for n in ("background", "pancreas", "tumour")])
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{name}_mask.nii.gz")))
    assert set(np.unique(mask).tolist()) <= {0, 1, 2}
    ds = pydicom.dcmread(str(out / f"{name}_seg.dcm"))
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["pancreas", "tumour"]
    assert _codes(ds.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0]) == (codes.SCT.Pancreas.value, "SCT")
    tumour = ds.SegmentSequence[1]
    assert _codes(tumour.SegmentedPropertyTypeCodeSequence[0]) == (codes.SCT.Neoplasm.value, "SCT")
    assert _codes(tumour.SegmentedPropertyCategoryCodeSequence[0]) == \
        (codes.cid7150.MorphologicallyAbnormalStructure.value, "SCT")
    if DCIODVFY:
        assert _dciodvfy_errors(out / f"{name}_seg.dcm") == []


@pytest.mark.parametrize("present", [(1, 3), ()])
def test_labels_without_voxels_keep_their_segment(ct_series, tmp_path, present):
    """A label the mask does not hold keeps its (empty) segment; an all-empty mask keeps every
    frame, as the binary SEG does."""
    sources = _sources_in_z_order(ct_series)
    mask = np.zeros((len(sources), 64, 64), np.uint8)
    for v in present:
        mask[2 * v, 10:20, 10 * v:10 * v + 8] = v
    path = tmp_path / "x_seg.dcm"
    labels = {"background": 0, "spleen": 1, "aorta": 2, "gallbladder": 3}
    write_dicom_seg(path, mask, sources, dataset="nnunet", algorithm="medseg unet none",
                    checkpoints=[Path("best.ckpt")], settings={"tta": "off"}, labels=labels,
                    title="Dataset009_Test")
    ds = pydicom.dcmread(str(path))
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["spleen", "aorta", "gallbladder"]
    assert ds.SeriesDescription == "medseg Dataset009_Test"
    assert int(ds.NumberOfFrames) == (len(present) if present else 3 * len(sources))
    np.testing.assert_array_equal(_seg_labels(path, sources, [1, 2, 3]), mask)
    if DCIODVFY:
        assert _dciodvfy_errors(path) == []


def test_snomed_properties_of_label_names():
    from pydicom.sr.codedict import codes

    def prop(name):
        category, kind, side = segment_property(name)
        return category.value, kind.value, None if side is None else side.value

    anatomy, abnormal, tissue = (codes.cid7150.AnatomicalStructure.value,
                                 codes.cid7150.MorphologicallyAbnormalStructure.value, codes.SCT.Tissue.value)
    assert prop("Pancreas") == (anatomy, codes.SCT.Pancreas.value, None)
    assert prop("spleen") == (anatomy, codes.SCT.Spleen.value, None)
    assert prop("right kidney") == prop("kidney_R") == (anatomy, codes.SCT.Kidney.value, codes.SCT.Right.value)
    assert prop("Gall-Bladder") == (anatomy, codes.SCT.Gallbladder.value, None)
    assert prop("inferior_vena_cava") == (anatomy, codes.SCT.InferiorVenaCava.value, None)
    for name in ("tumour", "Tumor", "pancreatic tumour", "enhancing tumor", "liver cancer"):
        assert prop(name) == (abnormal, codes.SCT.Neoplasm.value, None), name
    for name in ("organ1", "left", "structure 7"):
        assert prop(name) == (tissue, tissue, None), name
