"""The dataset integrity check: passes on good data, one line per problem otherwise."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from medseg.data import check_dataset, synth_bagls, synth_pancreas
from medseg.errors import DataError

SIZE, SLICES = 32, 8


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("check")
    return {
        "tcia": synth_pancreas(base / "tcia", cases=3, size=SIZE, slices=SLICES, seed=0),
        "msd": synth_pancreas(base / "msd", layout="msd", cases=2, size=SIZE, slices=SLICES, seed=0),
        "bagls": synth_bagls(base / "bagls", frames=8, test_frames=3, seed=0),
    }


def copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("name,dataset,cases", [("tcia", "pancreas", 3), ("msd", "pancreas", 2),
                                                 ("bagls", "bagls", 11)])
def test_good_data_passes(good, name, dataset, cases):
    report = check_dataset(dataset, good[name])
    assert report.ok and list(report) == []
    assert report.cases == cases
    assert report.summary() == f"OK: {cases} cases"
    assert report.layout == (name if name != "bagls" else "bagls")


def only_problem(report, path: Path, words: str) -> None:
    assert len(report.problems) == 1, report.problems
    line = report.problems[0]
    assert line.startswith(f"{path}: ") and words in line and "\n" not in line


def test_missing_label(good, tmp_path):
    root = copy(good["tcia"], tmp_path)
    (root / "TCIA_pancreas_labels-02-05-2017" / "label0002.nii.gz").unlink()
    report = check_dataset("pancreas", root)
    only_problem(report, root / "Pancreas-CT" / "PANCREAS_0002", "missing label")
    assert (report.failed, report.cases) == (1, 3)
    assert report.summary() == "FAILED: 1 of 3 cases"


def test_truncated_dicom(good, tmp_path):
    root = copy(good["tcia"], tmp_path)
    victim = sorted((root / "Pancreas-CT" / "PANCREAS_0003").rglob("*.dcm"))[4]
    victim.write_bytes(victim.read_bytes()[:-100])
    only_problem(check_dataset("pancreas", root), victim, "truncated")


def test_geometry_mismatch(good, tmp_path):
    root = copy(good["tcia"], tmp_path)
    path = root / "TCIA_pancreas_labels-02-05-2017" / "label0001.nii.gz"
    img = sitk.ReadImage(str(path))
    img.SetOrigin(tuple(o + 10.0 for o in img.GetOrigin()))
    sitk.WriteImage(img, str(path))
    only_problem(check_dataset("pancreas", root), path, "does not match")


def test_tcia_label_value_two_is_outside_the_set(good, tmp_path):
    # {0, 1} for TCIA labels; 2 (tumour) only exists in the MSD layout
    root = copy(good["tcia"], tmp_path)
    path = root / "TCIA_pancreas_labels-02-05-2017" / "label0003.nii.gz"
    img = sitk.ReadImage(str(path))
    arr = sitk.GetArrayFromImage(img)
    arr[arr > 0] = 2
    new = sitk.GetImageFromArray(arr)
    new.CopyInformation(img)
    sitk.WriteImage(new, str(path))
    only_problem(check_dataset("pancreas", root), path, "outside the expected set [0, 1]")
    assert check_dataset("pancreas", good["msd"]).ok  # where 2 is allowed


def test_mask_size_differs(good, tmp_path):
    root = copy(good["bagls"], tmp_path)
    seg = root / "test" / "1_seg.png"
    Image.fromarray(np.asarray(Image.open(seg))[:, :-2]).save(seg)
    report = check_dataset("bagls", root)
    only_problem(report, seg, "mask is")
    assert report.summary() == "FAILED: 1 of 11 cases"


def test_missing_mask(good, tmp_path):
    root = copy(good["bagls"], tmp_path)
    (root / "training" / "4_seg.png").unlink()
    only_problem(check_dataset("bagls", root), root / "training" / "4_seg.png", "missing mask")


def test_empty_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    report = check_dataset("pancreas", tmp_path / "empty")
    only_problem(report, tmp_path / "empty", "empty folder")
    assert not report.ok
    root = tmp_path / "b"
    (root / "training").mkdir(parents=True)
    (root / "test").mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(root / "training" / "0.png")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(root / "training" / "0_seg.png")
    report = check_dataset("bagls", root)
    only_problem(report, root / "test", "empty folder")
    assert report.cases == 1 and report.failed == 0


def test_empty_patient_folder(good, tmp_path):
    root = copy(good["tcia"], tmp_path)
    patient = root / "Pancreas-CT" / "PANCREAS_0001"
    shutil.rmtree(patient)
    patient.mkdir()
    only_problem(check_dataset("pancreas", root), patient, "empty folder")


def test_missing_root_is_an_error(tmp_path):
    with pytest.raises(DataError, match="dataset root not found"):
        check_dataset("pancreas", tmp_path / "nope")
