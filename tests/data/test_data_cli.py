"""`medseg data synth` and `medseg data check` in-process: outputs, exit codes, bad inputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from medseg.cli import main

SMALL = ["--cases", "3", "--size", "32", "--slices", "8"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("cli")
    out = {"tcia": base / "tcia", "msd": base / "msd", "bagls": base / "bagls"}
    assert main(["data", "synth", "pancreas", "--out", str(out["tcia"]), *SMALL]) == 0
    assert main(["data", "synth", "pancreas", "--out", str(out["msd"]), "--layout", "msd", *SMALL]) == 0
    assert main(["data", "synth", "bagls", "--out", str(out["bagls"]), "--frames", "8",
                 "--test-frames", "2"]) == 0
    return out


def run(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out
    return code, out, err


@pytest.mark.parametrize("name,dataset,n", [("tcia", "pancreas", 3), ("msd", "pancreas", 3),
                                             ("bagls", "bagls", 10)])
def test_synth_then_check_passes(synth, capsys, name, dataset, n):
    code, out, err = run(capsys, "data", "check", dataset, str(synth[name]))
    assert code == 0, out
    assert out.strip().splitlines() == [f"OK: {n} cases"]


def test_synth_reports_what_it_wrote(tmp_path, capsys):
    code, out, _ = run(capsys, "data", "synth", "pancreas", "--out", str(tmp_path / "p"), "--cases", "1",
                       "--size", "32", "--slices", "4")
    assert code == 0 and "wrote 1 scans of 32×32×4 (TCIA layout)" in out
    assert (tmp_path / "p" / "Pancreas-CT" / "PANCREAS_0001").is_dir()


def test_synth_refuses_non_empty_folder(synth, capsys):
    code, out, err = run(capsys, "data", "synth", "bagls", "--out", str(synth["bagls"]), "--frames", "2")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medseg: error: ") and "--force" in lines[0]
    assert str(synth["bagls"]) in lines[0]


def test_help(capsys):
    for argv in (["data", "--help"], ["data", "synth", "--help"], ["data", "synth", "pancreas", "--help"],
                 ["data", "check", "--help"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0
        out = capsys.readouterr().out
        assert "example" in out
    with pytest.raises(SystemExit):
        main(["data", "synth", "pancreas", "--help"])
    out = capsys.readouterr().out
    assert "--layout" in out and "--slices" in out and "--force" in out


def test_check_missing_root_is_usage_error(tmp_path, capsys):
    code, out, err = run(capsys, "data", "check", "pancreas", str(tmp_path / "nope"))
    assert code == 2
    assert err.strip() == f"medseg: error: {tmp_path / 'nope'}: dataset root not found"


def test_check_wrong_layout_for_dataset(synth, capsys):
    code, _, err = run(capsys, "data", "check", "bagls", str(synth["bagls"]), "--layout", "msd")
    assert code == 2 and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------- bad inputs, one per kind
def _empty_root(synth, root: Path) -> Path:
    root.mkdir()
    return root


def _patient_without_label(synth, root: Path) -> Path:
    shutil.copytree(synth["tcia"], root)
    (root / "TCIA_pancreas_labels-02-05-2017" / "label0002.nii.gz").unlink()
    return root / "Pancreas-CT" / "PANCREAS_0002"


def _truncated_dicom(synth, root: Path) -> Path:
    shutil.copytree(synth["tcia"], root)
    victim = sorted((root / "Pancreas-CT" / "PANCREAS_0001").rglob("*.dcm"))[3]
    victim.write_bytes(victim.read_bytes()[:-64])
    return victim


def _non_dicom_among_slices(synth, root: Path) -> Path:
    shutil.copytree(synth["tcia"], root)
    series = next((root / "Pancreas-CT" / "PANCREAS_0003").rglob("*.dcm")).parent
    stray = series / "thumbs.jpg"
    stray.write_bytes(b"\xff\xd8\xff\xe0 not a slice")
    return stray


def _label_other_grid(synth, root: Path) -> Path:
    shutil.copytree(synth["tcia"], root)
    path = root / "TCIA_pancreas_labels-02-05-2017" / "label0001.nii.gz"
    img = sitk.ReadImage(str(path))
    img = sitk.Resample(img, [s // 2 for s in img.GetSize()], sitk.Transform(), sitk.sitkNearestNeighbor,
                        img.GetOrigin(), [s * 2 for s in img.GetSpacing()], img.GetDirection())
    sitk.WriteImage(img, str(path))
    return path


def _mask_other_size(synth, root: Path) -> Path:
    shutil.copytree(synth["bagls"], root)
    seg = root / "training" / "3_seg.png"
    Image.fromarray(np.asarray(Image.open(seg))[5:]).save(seg)
    return seg


def _nan_in_nifti(synth, root: Path) -> Path:
    shutil.copytree(synth["msd"], root)
    path = root / "imagesTr" / "pancreas_002.nii.gz"
    img = sitk.Cast(sitk.ReadImage(str(path)), sitk.sitkFloat32)
    arr = sitk.GetArrayFromImage(img)
    arr[1, 1, 1] = np.nan
    new = sitk.GetImageFromArray(arr)
    new.CopyInformation(img)
    sitk.WriteImage(new, str(path))
    return path


@pytest.mark.parametrize("make,dataset,words", [
    (_empty_root, "pancreas", "empty folder"),
    (_patient_without_label, "pancreas", "missing label"),
    (_truncated_dicom, "pancreas", "truncated"),
    (_non_dicom_among_slices, "pancreas", "not a DICOM file"),
    (_label_other_grid, "pancreas", "does not match"),
    (_mask_other_size, "bagls", "mask is"),
    (_nan_in_nifti, "pancreas", "NaN"),
])
def test_bad_input_is_one_line_naming_the_file(synth, tmp_path, capsys, make, dataset, words):
    root = tmp_path / "ds"
    bad = make(synth, root)
    code, out, err = run(capsys, "data", "check", dataset, str(root))
    assert code == 1
    lines = out.strip().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"{bad}: ") and words in lines[0]
    assert lines[1].startswith("FAILED: ")
