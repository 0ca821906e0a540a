"""DICOM SEG edge cases (issue 18): sources a Segmentation cannot reference are refused before
anything is written; an all-empty mask is a valid SEG, written without a console warning and
said in the output; checkpoints are named by file name and content hash, never by a local path.
Tiny untrained checkpoints (tests/predict/conftest.py); nothing is trained here."""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medseg.cli import main
from medseg.predict.writers import SEG_SOURCE_ATTRIBUTES, checkpoint_labels

DCIODVFY = shutil.which("dciodvfy")


def _cli(capsys, *args) -> tuple[int, str, str]:
    rc = main(["predict", "--no-progress", "--device", "cpu", *map(str, args)])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _copy_series(series: Path, dest: Path) -> list[Path]:
    shutil.copytree(series, dest)
    return sorted(dest.glob("*.dcm"))


def _edit(path: Path, keyword: str, empty: bool) -> None:
    ds = pydicom.dcmread(str(path))
    if empty:
        setattr(ds, keyword, None)
    else:
        delattr(ds, keyword)
    ds.save_as(str(path))


def _errors(path: Path) -> list[str]:
    out = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("keyword, empty", [
    ("FrameOfReferenceUID", False), ("FrameOfReferenceUID", True), ("StudyInstanceUID", False),
    ("PixelSpacing", False), ("ImageOrientationPatient", True),
])
def test_a_source_without_what_a_seg_references_is_refused(tiny_ckpts, ct_series, tmp_path, capsys,
                                                            keyword, empty):
    files = _copy_series(ct_series, tmp_path / "series")
    broken = files[len(files) // 2]
    _edit(broken, keyword, empty)
    out = tmp_path / "out"
    for fmt in ("dicom-seg", "both"):
        rc, stdout, err = _cli(capsys, "--checkpoint", tiny_ckpts["ct0"], "--output", out,
                               "--format", fmt, tmp_path / "series")
        lines = err.strip().splitlines()
        assert rc == 2 and len(lines) == 1, err
        assert str(broken) in lines[0] and keyword in lines[0] and "DICOM SEG" in lines[0]
        assert not out.exists() and stdout == ""


def test_the_same_source_still_gives_a_nifti_mask(tiny_ckpts, ct_series, tmp_path, capsys):
    files = _copy_series(ct_series, tmp_path / "series")
    for f in files:
        _edit(f, "FrameOfReferenceUID", False)
    rc, _, err = _cli(capsys, "--checkpoint", tiny_ckpts["ct0"], "--output", tmp_path / "out",
                      tmp_path / "series")
    assert rc == 0, err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["series_mask.nii.gz"]


def test_a_real_ct_file_without_frame_of_reference_is_refused(tiny_ckpts, tmp_path, capsys):
    """pydicom's JPEG 2000 CT slice 693_J2KI.dcm has no FrameOfReferenceUID (issue 18:
    a highdicom ValueError traceback)."""
    from pydicom.data import get_testdata_file

    src = tmp_path / "693_J2KI.dcm"
    shutil.copy(get_testdata_file("693_J2KI.dcm"), src)
    rc, _, err = _cli(capsys, "--checkpoint", tiny_ckpts["ct0"], "--output", tmp_path / "out",
                      "--format", "dicom-seg", src)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("medseg: error: "), err
    assert "693_J2KI.dcm" in lines[0] and "FrameOfReferenceUID" in lines[0]
    assert not (tmp_path / "out").exists()


def test_the_checked_attributes_are_the_ones_highdicom_needs(ct_series, tmp_path):
    """Without any one of them highdicom fails or writes an invalid SEG: the list is not padding."""
    from medseg.predict.writers import write_dicom_seg

    assert {"FrameOfReferenceUID", "StudyInstanceUID", "SeriesInstanceUID",
            "SOPInstanceUID"} <= set(SEG_SOURCE_ATTRIBUTES)
    files = _copy_series(ct_series, tmp_path / "series")
    for f in files:
        _edit(f, "FrameOfReferenceUID", False)
    mask = np.zeros((len(files), 64, 64), np.uint8)
    mask[2, 5:9, 5:9] = 1
    with pytest.raises(ValueError, match="Frame Of Reference"):
        write_dicom_seg(tmp_path / "x.dcm", mask, files, dataset="pancreas", algorithm="medseg",
                        checkpoints=[tmp_path / "none.ckpt"], settings={})


# --------------------------------------------------------------------------- empty masks


@pytest.fixture(scope="module")
def empty_ckpt(tiny_ckpts, tmp_path_factory) -> Path:
    """A tiny checkpoint whose head always says background: every mask comes out empty."""
    import torch

    path = tmp_path_factory.mktemp("empty") / "empty.ckpt"
    ckpt = torch.load(tiny_ckpts["ct0"], weights_only=True)
    sd = ckpt["state_dict"]
    sd["model.head.weight"] = torch.zeros_like(sd["model.head.weight"])
    sd["model.head.bias"] = torch.tensor([20.0, -20.0], dtype=sd["model.head.bias"].dtype)
    torch.save(ckpt, path)
    return path


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_an_empty_mask_is_a_valid_seg_without_a_warning(empty_ckpt, ct_series, tmp_path, capsys):
    import highdicom as hd

    out = tmp_path / "out"
    seen = _Records()  # highdicom announces an empty SEG through logging, not warnings
    logging.getLogger().addHandler(seen)
    try:
        rc, stdout, err = _cli(capsys, "--checkpoint", empty_ckpt, "--output", out,
                               "--format", "both", ct_series)
    finally:
        logging.getLogger().removeHandler(seen)
    assert rc == 0, err
    assert err == "" and [r.getMessage() for r in seen.records] == []
    name = ct_series.resolve().name
    assert f"{name}: the mask is empty" in stdout and f"{name}_seg.dcm" in stdout
    seg = hd.seg.segread(str(out / f"{name}_seg.dcm"))
    n = len(list(ct_series.glob("*.dcm")))
    assert int(seg.NumberOfFrames) == n and not seg.pixel_array.any()
    if DCIODVFY:
        assert _errors(out / f"{name}_seg.dcm") == []


def test_a_mask_with_foreground_says_nothing_about_emptiness(tiny_ckpts, ct_series, tmp_path, capsys):
    rc, stdout, err = _cli(capsys, "--checkpoint", tiny_ckpts["ct0"], "--output", tmp_path / "out",
                           "--format", "dicom-seg", ct_series)
    assert rc == 0, err
    assert "empty" not in stdout


# --------------------------------------------------------------------------- checkpoint names


def test_checkpoint_labels_are_name_and_content_hash(tmp_path):
    a = tmp_path / "exp" / "repeat0" / "checkpoints" / "best.ckpt"
    b = tmp_path / "exp" / "repeat1" / "checkpoints" / "best.ckpt"
    for p, content in ((a, b"one"), (b, b"two")):
        p.parent.mkdir(parents=True)
        p.write_bytes(content)
    (one,) = checkpoint_labels([a])
    assert one == f"best.ckpt@{hashlib.sha256(b'one').hexdigest()[:12]}"
    both = checkpoint_labels([a, b])
    assert both == [f"repeat0/checkpoints/best.ckpt@{hashlib.sha256(b'one').hexdigest()[:12]}",
                    f"repeat1/checkpoints/best.ckpt@{hashlib.sha256(b'two').hexdigest()[:12]}"]
    assert not any(str(tmp_path) in label for label in both)


def test_reserved_characters_leave_the_parameters_parseable(tmp_path):
    a, b = tmp_path / "heuristic_k=3" / "best.ckpt", tmp_path / "a, b" / "best.ckpt"
    for p in (a, b):
        p.parent.mkdir(parents=True)
        p.write_bytes(b"x")
    labels = checkpoint_labels([a, b])
    assert labels[0].startswith("heuristic_k_3/best.ckpt@") and labels[1].startswith("a__b/best.ckpt@")


def test_an_ensemble_seg_names_each_checkpoint_without_a_local_path(tiny_ckpts, ct_series, tmp_path,
                                                                    capsys):
    import highdicom as hd

    members = []
    for r, key in enumerate(("ct0", "ct1")):
        dest = tmp_path / "exp" / f"repeat{r}" / "checkpoints" / "best.ckpt"
        dest.parent.mkdir(parents=True)
        shutil.copy(tiny_ckpts[key], dest)
        members += ["--checkpoint", dest]
    out = tmp_path / "out" / "case.dcm"
    rc, _, err = _cli(capsys, *members, "--output", out, ct_series)
    assert rc == 0, err
    raw = out.read_bytes()
    assert str(tmp_path).encode() not in raw and str(Path.home()).encode() not in raw
    ds = pydicom.dcmread(str(out))
    algo = hd.AlgorithmIdentificationSequence.from_sequence(
        ds.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence)
    params = algo.parameters  # highdicom's own parser: ',' and '=' must stay unambiguous
    hashes = [hashlib.sha256(Path(tiny_ckpts[k]).read_bytes()).hexdigest()[:12] for k in ("ct0", "ct1")]
    assert params["checkpoints"].split() == [f"repeat0/checkpoints/best.ckpt@{hashes[0]}",
                                             f"repeat1/checkpoints/best.ckpt@{hashes[1]}"]


@pytest.mark.skipif(DCIODVFY is None, reason="dicom3tools (dciodvfy) not installed")
def test_dciodvfy_finds_no_error_in_a_seg_of_the_synthetic_ct(tiny_ckpts, ct_series, tmp_path, capsys):
    out = tmp_path / "case.dcm"
    rc, _, err = _cli(capsys, "--checkpoint", tiny_ckpts["ct0"], "--output", out, ct_series)
    assert rc == 0, err
    assert _errors(out) == []
