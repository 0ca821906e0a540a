"""`medseg predict`: geometry of the written masks, agreement with `cases.csv`, input rules,
overlays, and every error case leaving no output behind.

Uses the session's tiny trained runs (`pancreas_run`, `bagls_run`), so every test here is
marked slow (the fixtures train); the quick predict tests are test_inference.py and test_outputs.py.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import yaml

from medseg.cli import main
from medseg.predict import discover_inputs, predict

pytestmark = pytest.mark.slow


# --------------------------------------------------------------------------- helpers


def _ckpt(run: Path) -> Path:
    return run / "checkpoints" / "best.ckpt"


def _split(run: Path) -> dict:
    return json.loads((run / "split.json").read_text())


def _cases_csv(run: Path) -> dict[str, dict]:
    with open(run / "cases.csv", newline="") as fh:
        return {row["case_id"]: row for row in csv.DictReader(fh)}


def _empty_score(run: Path):
    return yaml.safe_load((run / "config.yaml").read_text())["eval"]["empty_score"]


def _series_dir(image: Path) -> Path:
    dirs = {p.parent for p in Path(image).rglob("*.dcm")}
    assert len(dirs) == 1
    return dirs.pop()


def _sitk_series(image: Path) -> sitk.Image:
    folder = _series_dir(image)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def _assert_same_geometry(out: sitk.Image, ref: sitk.Image) -> None:
    assert out.GetSize() == ref.GetSize()
    # NIfTI stores origin/spacing/direction as float32: agree to that precision
    np.testing.assert_allclose(out.GetOrigin(), ref.GetOrigin(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(out.GetSpacing(), ref.GetSpacing(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out.GetDirection(), ref.GetDirection(), rtol=0, atol=1e-5)


def _run_cli(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(["predict", "--no-progress", *map(str, args)])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _assert_one_line_error(rc: int, err: str, *names: str) -> None:
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("medseg: error: ")
    assert "Traceback" not in err
    for n in names:
        assert n in lines[0], (n, lines[0])


def _listing(folder: Path) -> list[str]:
    """Everything below ``folder``, hidden files included (staging leftovers would show)."""
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _scores(run: Path):
    from medseg.training.metrics import SegmentationScores

    return SegmentationScores(_empty_score(run))


# --------------------------------------------------------------------------- fixtures


def _predict_test_cases(run, folder: Path):
    """predict on the run's test cases (DICOM series folders / PNG frames), with overlays."""
    split = _split(run)
    images = [Path(split["cases"][cid]["image"]) for cid in split["test"]]
    report = predict(_ckpt(run), images, folder / "out", overlay=True, device="cpu", progress=False)
    return split, images, report


@pytest.fixture(scope="module")
def pancreas_predicted(pancreas_run, tmp_path_factory):
    return _predict_test_cases(pancreas_run, tmp_path_factory.mktemp("pred_pancreas"))


@pytest.fixture(scope="module")
def bagls_predicted(bagls_run, tmp_path_factory):
    return _predict_test_cases(bagls_run, tmp_path_factory.mktemp("pred_bagls"))


@pytest.fixture(scope="module")
def nifti_scan(pancreas_run, tmp_path_factory) -> Path:
    """A test scan of the run re-written as NIfTI in another (axis-aligned) orientation — every
    axis reversed, RAI — with an odd origin: the same physical voxels, another array order.
    (An oblique frame is refused: tests/predict/test_predict_orientation.py.)"""
    split = _split(pancreas_run)
    img = _sitk_series(Path(split["cases"][split["test"][0]]["image"]))
    img.SetOrigin((12.5, -40.25, 300.75))
    img = sitk.DICOMOrient(img, "RAI")
    path = tmp_path_factory.mktemp("nifti") / "scan_rotated.nii.gz"
    sitk.WriteImage(img, str(path))
    return path


# --------------------------------------------------------------------------- outputs


def test_dicom_series_mask_has_the_series_geometry(pancreas_predicted):
    split, images, report = pancreas_predicted
    assert [c.name for c in report.cases] == [p.name for p in images]
    for case, image in zip(report.cases, images):
        assert case.mask.name == f"{image.name}_mask.nii.gz"
        out = sitk.ReadImage(str(case.mask))
        assert out.GetPixelID() == sitk.sitkUInt8
        _assert_same_geometry(out, _sitk_series(image))
        values = set(np.unique(sitk.GetArrayViewFromImage(out)).tolist())
        assert values <= {0, 1}


def test_nifti_mask_has_the_nifti_geometry(pancreas_run, pancreas_predicted, nifti_scan, tmp_path):
    report = predict(_ckpt(pancreas_run), [nifti_scan], tmp_path / "out", device="cpu",
                     progress=False)
    (case,) = report.cases
    assert case.name == "scan_rotated"
    assert case.mask == tmp_path / "out" / "scan_rotated_mask.nii.gz"
    out = sitk.ReadImage(str(case.mask))
    ref = sitk.ReadImage(str(nifti_scan))
    assert out.GetPixelID() == sitk.sitkUInt8
    _assert_same_geometry(out, ref)
    assert not np.allclose(out.GetDirection(), np.eye(3).ravel())  # the odd frame survived
    # the DICOM series' voxels in another array order → the DICOM mask, in that order
    dicom_mask = sitk.GetArrayFromImage(sitk.ReadImage(str(pancreas_predicted[2].cases[0].mask)))
    assert not np.array_equal(sitk.GetArrayFromImage(out), dicom_mask) or not dicom_mask.any()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.DICOMOrient(out, "LPS")), dicom_mask)


def test_pancreas_cases_csv_dice_equals_dice_of_predicted_masks(pancreas_run, pancreas_predicted):
    from medseg.data import load_pancreas_case

    split, _, report = pancreas_predicted
    rows = _cases_csv(pancreas_run)
    scores = _scores(pancreas_run)
    assert sorted(rows) == sorted(split["test"])
    for cid, case in zip(split["test"], report.cases):
        paths = split["cases"][cid]
        label = load_pancreas_case(paths["image"], paths["label"], case_id=cid).label
        pred = sitk.GetArrayFromImage(sitk.ReadImage(str(case.mask)))
        assert pred.shape == label.shape
        s = scores.score(cid, torch.from_numpy(pred), torch.from_numpy(np.asarray(label)))
        assert int(rows[cid]["pred_voxels"]) == s.pred_voxels == case.foreground
        assert int(rows[cid]["label_voxels"]) == s.label_voxels
        assert s.dice == pytest.approx(float(rows[cid]["dice"]), abs=1e-6)
        assert s.iou == pytest.approx(float(rows[cid]["iou"]), abs=1e-6)


def test_ct_overlay_is_written(pancreas_predicted):
    from PIL import Image

    _, _, report = pancreas_predicted
    for case in report.cases:
        assert case.overlay == case.mask.parent / f"{case.name}_overlay.png"
        with Image.open(case.overlay) as im:
            im.load()
            assert im.mode in ("RGB", "RGBA") and im.size[0] > 100
    # only the promised files, no staging leftovers
    expected = sorted(n for c in report.cases for n in (c.mask.name, c.overlay.name))
    assert _listing(report.output) == expected


def test_bagls_frame_masks_have_the_frame_size(bagls_run, bagls_predicted):
    from PIL import Image

    from medseg.data import load_bagls_frame

    split, images, report = bagls_predicted
    rows = _cases_csv(bagls_run)
    scores = _scores(bagls_run)
    assert len(report.cases) == len(split["test"]) >= 2
    for cid, image, case in zip(split["test"], images, report.cases):
        assert case.mask.name == f"{image.stem}_mask.png"
        with Image.open(image) as src, Image.open(case.mask) as m, Image.open(case.overlay) as ov:
            assert m.size == src.size and ov.size == src.size
            assert m.mode == "L" and ov.mode == "RGB"
            pred = np.asarray(m)
        assert set(np.unique(pred).tolist()) <= {0, 255}
        frame = load_bagls_frame(image)
        s = scores.score(cid, torch.from_numpy(pred > 0), torch.from_numpy(frame.mask))
        assert int(rows[cid]["pred_voxels"]) == s.pred_voxels == case.foreground
        assert s.dice == pytest.approx(float(rows[cid]["dice"]), abs=1e-6)


def test_cli_prints_a_summary_and_respects_force(pancreas_run, nifti_scan, tmp_path, capsys):
    out = tmp_path / "out"
    target = out / "scan_rotated_mask.nii.gz"
    out.mkdir()
    target.write_bytes(b"old")
    rc, _, err = _run_cli(capsys, "--checkpoint", _ckpt(pancreas_run), "--output", out, nifti_scan,
                          "--device", "cpu")
    _assert_one_line_error(rc, err, str(target), "--force")
    assert target.read_bytes() == b"old" and _listing(out) == ["scan_rotated_mask.nii.gz"]
    rc, stdout, err = _run_cli(capsys, "--checkpoint", _ckpt(pancreas_run), "--output", out,
                               nifti_scan, "--force", "--overlay", "--batch-size", "5")
    assert rc == 0, err
    assert "scan_rotated" in stdout and "wrote 1 mask(s) and 1 overlay(s)" in stdout
    assert sitk.ReadImage(str(target)).GetSize() == sitk.ReadImage(str(nifti_scan)).GetSize()
    assert _listing(out) == ["scan_rotated_mask.nii.gz", "scan_rotated_overlay.png"]


def test_help_states_the_input_rules(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["predict", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for words in ("SeriesInstanceUID", "_mask.nii.gz", "0 background / 255", "--force",
                  "--overlay", "--batch-size", "--device", "weights_only=True"):
        assert words in text


# --------------------------------------------------------------------------- input rules


def test_folder_rules(pancreas_root, bagls_root, nifti_scan, tmp_path):
    patients = sorted(p for p in (pancreas_root / "Pancreas-CT").iterdir() if p.is_dir())
    # a folder of patients → one input per patient (each holds one series), named by the folder
    found = discover_inputs([pancreas_root / "Pancreas-CT"])
    assert [i.name for i in found] == [p.name for p in patients]
    assert {(i.kind, i.fmt) for i in found} == {("ct", "dicom-series")}
    # a patient folder (series nested below study/series folders) → one input
    (one,) = discover_inputs([patients[0]])
    assert one.name == patients[0].name and one.path == _series_dir(patients[0])
    # a single DICOM file
    dcm = sorted(_series_dir(patients[0]).glob("*.dcm"))[0]
    (single,) = discover_inputs([dcm])
    assert (single.name, single.fmt) == (dcm.stem, "dicom-file")
    # a folder of NIfTI files (plus non-image files, skipped)
    folder = tmp_path / "niftis"
    folder.mkdir()
    shutil.copy(nifti_scan, folder / "a.nii.gz")
    shutil.copy(nifti_scan, folder / "b.nii.gz")
    (folder / "notes.json").write_text("{}")
    assert [(i.name, i.fmt) for i in discover_inputs([folder])] == [("a", "nifti"), ("b", "nifti")]
    # BAGLS test/: N.png frames, not the N_seg.png masks or N.meta
    frames = discover_inputs([bagls_root / "test"])
    stems = sorted(p.stem for p in (bagls_root / "test").glob("*.png") if not p.stem.endswith("_seg"))
    assert sorted(i.name for i in frames) == stems
    assert {i.kind for i in frames} == {"frame"}


# --------------------------------------------------------------------------- errors


@pytest.fixture()
def out_dir(tmp_path) -> Path:
    return tmp_path / "out"


def _copy_series(patient: Path, dest: Path) -> Path:
    shutil.copytree(_series_dir(patient), dest)
    return dest


def test_truncated_dicom_slice(pancreas_run, pancreas_root, tmp_path, out_dir, capsys):
    patient = sorted((pancreas_root / "Pancreas-CT").iterdir())[0]
    series = _copy_series(patient, tmp_path / "series")
    victim = sorted(series.glob("*.dcm"))[3]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) * 2 // 3])
    rc, _, err = _run_cli(capsys, "--checkpoint", _ckpt(pancreas_run), "--output", out_dir, series)
    _assert_one_line_error(rc, err, str(victim), "truncated")
    assert _listing(out_dir) == []


def test_truncated_nifti(pancreas_run, nifti_scan, tmp_path, out_dir, capsys):
    # the gzip stream ends early; the NIfTI header itself is intact (ITK alone would zero-fill)
    bad = tmp_path / "truncated.nii.gz"
    data = nifti_scan.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    rc, _, err = _run_cli(capsys, "--checkpoint", _ckpt(pancreas_run), "--output", out_dir,
                          nifti_scan, bad)
    _assert_one_line_error(rc, err, str(bad), "truncated")
    assert _listing(out_dir) == []


def test_failure_after_a_written_mask_leaves_nothing(pancreas_run, nifti_scan, tmp_path, out_dir,
                                                     capsys, monkeypatch):
    """A case that fails while being processed undoes the cases already done."""
    import medseg.predict.readers as mp
    from medseg.errors import DataError

    second = tmp_path / "second.nii.gz"
    shutil.copy(nifti_scan, second)
    real_read = mp.read_ct

    def read(inp):
        if inp.name == "second":
            raise DataError(f"{inp.path}: simulated failure while reading")
        return real_read(inp)

    monkeypatch.setattr(mp, "read_ct", read)
    out_dir.mkdir()
    (out_dir / "keep.txt").write_text("mine")
    (out_dir / "second_mask.nii.gz").write_bytes(b"old")
    rc, _, err = _run_cli(capsys, "--checkpoint", _ckpt(pancreas_run), "--output", out_dir,
                          "--overlay", "--force", nifti_scan, second)
    _assert_one_line_error(rc, err, str(second), "simulated")
    # the first input's mask and overlay were produced, and are gone; older files untouched
    assert _listing(out_dir) == ["keep.txt", "second_mask.nii.gz"]
    assert (out_dir / "second_mask.nii.gz").read_bytes() == b"old"
    # a folder created by predict itself is removed again
    fresh = tmp_path / "fresh"
    rc, _, err = _run_cli(capsys, "--checkpoint", _ckpt(pancreas_run), "--output", fresh,
                          nifti_scan, second)
    _assert_one_line_error(rc, err, str(second))
    assert not fresh.exists()


def test_unsupported_and_unreadable_inputs(pancreas_run, bagls_run, tmp_path, out_dir, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    rc, _, err = _run_cli(capsys, "--checkpoint", _ckpt(pancreas_run), "--output", out_dir, notes)
    _assert_one_line_error(rc, err, str(notes), "unsupported format")

    garbage = tmp_path / "frame.png"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20)
    rc, _, err = _run_cli(capsys, "--checkpoint", _ckpt(bagls_run), "--output", out_dir, garbage)
    _assert_one_line_error(rc, err, str(garbage), "unreadable")

    fake_dcm = tmp_path / "slice.dcm"
    fake_dcm.write_bytes(b"\x00" * 64)
    rc, _, err = _run_cli(capsys, "--checkpoint", _ckpt(pancreas_run), "--output", out_dir, fake_dcm)
    _assert_one_line_error(rc, err, str(fake_dcm), "not a DICOM file")

    missing = tmp_path / "nowhere"
    rc, _, err = _run_cli(capsys, "--checkpoint", _ckpt(pancreas_run), "--output", out_dir, missing)
    _assert_one_line_error(rc, err, str(missing), "no such file")

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.md").write_text("x")
    rc, _, err = _run_cli(capsys, "--checkpoint", _ckpt(pancreas_run), "--output", out_dir, empty)
    _assert_one_line_error(rc, err, str(empty), "no supported images")
    assert _listing(out_dir) == []


def test_input_kind_must_match_the_checkpoint(pancreas_run, bagls_run, pancreas_root, bagls_root,
                                              out_dir, capsys):
    frame = sorted((bagls_root / "test").glob("*.png"))[0]
    rc, _, err = _run_cli(capsys, "--checkpoint", _ckpt(pancreas_run), "--output", out_dir, frame)
    _assert_one_line_error(rc, err, str(frame), "pancreas")
    patient = sorted((pancreas_root / "Pancreas-CT").iterdir())[0]
    rc, _, err = _run_cli(capsys, "--checkpoint", _ckpt(bagls_run), "--output", out_dir, patient)
    _assert_one_line_error(rc, err, str(patient), "bagls")
    assert _listing(out_dir) == []


def test_duplicate_names_and_mixed_series(pancreas_run, pancreas_root, nifti_scan, tmp_path, out_dir,
                                          capsys):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        shutil.copy(nifti_scan, tmp_path / sub / "scan.nii.gz")
    rc, _, err = _run_cli(capsys, "--checkpoint", _ckpt(pancreas_run), "--output", out_dir,
                          tmp_path / "a" / "scan.nii.gz", tmp_path / "b")
    _assert_one_line_error(rc, err, str(tmp_path / "b" / "scan.nii.gz"), "'scan'")

    # loose slices of two different series in one folder cannot be told apart as inputs
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for patient in sorted((pancreas_root / "Pancreas-CT").iterdir())[:2]:
        src = sorted(_series_dir(patient).glob("*.dcm"))[0]
        shutil.copy(src, mixed / f"{patient.name}.dcm")
    rc, _, err = _run_cli(capsys, "--checkpoint", _ckpt(pancreas_run), "--output", out_dir, mixed)
    _assert_one_line_error(rc, err, str(mixed), "own folder")
    assert _listing(out_dir) == []


def test_missing_and_incompatible_checkpoints(pancreas_run, nifti_scan, tmp_path, out_dir, capsys):
    missing = tmp_path / "none.ckpt"
    rc, _, err = _run_cli(capsys, "--checkpoint", missing, "--output", out_dir, nifti_scan)
    _assert_one_line_error(rc, err, str(missing), "not found")

    not_medseg = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "epoch": 3}, not_medseg)
    rc, _, err = _run_cli(capsys, "--checkpoint", not_medseg, "--output", out_dir, nifti_scan)
    _assert_one_line_error(rc, err, str(not_medseg), "not a medseg checkpoint")

    ckpt = torch.load(_ckpt(pancreas_run), map_location="cpu", weights_only=True)
    ckpt["medseg"]["model"]["base_channels"] = ckpt["medseg"]["model"]["base_channels"] * 2
    misfit = tmp_path / "misfit.ckpt"
    torch.save(ckpt, misfit)
    rc, _, err = _run_cli(capsys, "--checkpoint", misfit, "--output", out_dir, nifti_scan)
    _assert_one_line_error(rc, err, str(misfit), "incompatible")

    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"PK\x03\x04 truncated zip")
    rc, _, err = _run_cli(capsys, "--checkpoint", garbage, "--output", out_dir, nifti_scan)
    _assert_one_line_error(rc, err, str(garbage))
    assert _listing(out_dir) == []
