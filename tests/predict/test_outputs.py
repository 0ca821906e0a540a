"""`medseg predict` outputs and refusals: DICOM SEG round trip, probability/uncertainty maps,
--output naming, non-image DICOM objects, modality and format checks, experiment ensembles.
Tiny untrained checkpoints (tests/predict/conftest.py); nothing is trained here."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from medseg.cli import main
from medseg.predict import Predictor, method_checkpoints, predict


def _cli(capsys, *args) -> tuple[int, str, str]:
    rc = main(["predict", "--no-progress", "--device", "cpu", *map(str, args)])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _one_line_error(rc: int, err: str, *names: str) -> str:
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medseg: error: "), err
    for n in names:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def _array(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _seg_frames(seg_path: Path, sources: list[Path]) -> np.ndarray:
    """The SEG read back with highdicom, one (Y, X) mask per source slice (zeros where omitted)."""
    import highdicom as hd

    seg = hd.seg.segread(str(seg_path))
    out = []
    referenced = {uid for _, _, uid in seg.get_source_image_uids()}
    for p in sources:
        uid = str(pydicom.dcmread(str(p), stop_before_pixels=True).SOPInstanceUID)
        assert uid in referenced
        frame = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=[uid], segment_numbers=[1], ignore_spatial_locations=True,
            assert_missing_frames_are_empty=True)
        out.append(frame[0, :, :, 0])
    return np.stack(out)


def _sources_in_z_order(series: Path) -> list[Path]:
    files = sorted(series.glob("*.dcm"))
    z = [float(pydicom.dcmread(str(f), stop_before_pixels=True).ImagePositionPatient[2]) for f in files]
    return [files[i] for i in np.argsort(z)]


# --------------------------------------------------------------------------- outputs


@pytest.mark.slow
def test_dicom_seg_round_trip_equals_the_nifti_mask(tiny_ckpts, ct_series, tmp_path, capsys):
    out = tmp_path / "out"
    rc, stdout, err = _cli(capsys, "--checkpoint", tiny_ckpts["ct0"], "--output", out,
                           "--format", "both", ct_series)
    assert rc == 0, err
    name = ct_series.resolve().name
    assert _listing(out) == [f"{name}_mask.nii.gz", f"{name}_seg.dcm"]
    mask = _array(out / f"{name}_mask.nii.gz")
    assert mask.any()
    seg_frames = _seg_frames(out / f"{name}_seg.dcm", _sources_in_z_order(ct_series))
    np.testing.assert_array_equal(seg_frames, mask)
    ds = pydicom.dcmread(str(out / f"{name}_seg.dcm"))
    src = pydicom.dcmread(str(next(ct_series.glob("*.dcm"))), stop_before_pixels=True)
    assert ds.Modality == "SEG" and ds.SegmentationType == "BINARY"
    assert ds.FrameOfReferenceUID == src.FrameOfReferenceUID
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == src.SeriesInstanceUID
    algo = ds.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert "medseg" in algo.AlgorithmName and "ct0.ckpt" in str(algo.AlgorithmParameters)
    assert len(ds.SegmentSequence) == 1


@pytest.mark.slow
def test_dicom_seg_omits_empty_frames(ct_series, tmp_path):
    from medseg.predict.writers import write_dicom_seg

    sources = _sources_in_z_order(ct_series)
    mask = np.zeros((len(sources), 64, 64), np.uint8)
    mask[3, 10:20, 30:40] = 1
    mask[7, 40:50, 5:9] = 1
    path = tmp_path / "x_seg.dcm"
    write_dicom_seg(path, mask, sources, dataset="pancreas", algorithm="medseg unet none",
                    checkpoints=[Path("best.ckpt")], settings={"tta": "off"})
    assert int(pydicom.dcmread(str(path)).NumberOfFrames) == 2
    np.testing.assert_array_equal(_seg_frames(path, sources), mask)


def test_probabilities_and_uncertainty_maps(tiny_ckpts, ct_series, tmp_path):
    series_img = sitk.ReadImage(sorted(str(p) for p in _sources_in_z_order(ct_series)))
    out = tmp_path / "scan.nii.gz"
    report = predict([tiny_ckpts["ct0"], tiny_ckpts["ct1"]], [ct_series], out, tta=True,
                     save_probabilities=True, uncertainty=True, device="cpu", progress=False)
    assert report.passes == 4  # 2 members × (identity, x): the axes their training mirrored
    assert _listing(tmp_path) == ["scan.nii.gz", "scan_prob.nii.gz", "scan_uncertainty.nii.gz",
                                  "scan_variance.nii.gz"]
    prob_img = sitk.ReadImage(str(tmp_path / "scan_prob.nii.gz"))
    assert prob_img.GetPixelID() == sitk.sitkFloat32 and prob_img.GetSize() == series_img.GetSize()
    np.testing.assert_allclose(prob_img.GetOrigin(), series_img.GetOrigin(), atol=1e-4)
    hu = sitk.GetArrayFromImage(series_img).astype(np.float32)
    pred = Predictor([tiny_ckpts["ct0"], tiny_ckpts["ct1"]], device="cpu", tta=True).predict_ct(hu)
    np.testing.assert_allclose(_array(tmp_path / "scan_prob.nii.gz"), pred.probability, atol=1e-6)
    np.testing.assert_allclose(_array(tmp_path / "scan_uncertainty.nii.gz"), pred.entropy, atol=1e-6)
    np.testing.assert_allclose(_array(tmp_path / "scan_variance.nii.gz"), pred.variance, atol=1e-6)
    np.testing.assert_array_equal(_array(out), pred.mask)
    assert 0 <= pred.entropy.min() and pred.entropy.max() <= np.log(2) + 1e-6


def test_single_pass_uncertainty_has_no_variance(tiny_ckpts, ct_series, tmp_path):
    predict(tiny_ckpts["ct0"], [ct_series], tmp_path / "o", uncertainty=True, device="cpu",
            progress=False)
    assert [p.split("_", 1)[-1] for p in _listing(tmp_path / "o")] == ["mask.nii.gz", "uncertainty.nii.gz"]


def test_frame_outputs(tiny_ckpts, bagls_root, tmp_path):
    frame = sorted((bagls_root / "test").glob("[0-9]*.png"))[0]
    out = tmp_path / "f.png"
    predict(tiny_ckpts["bagls"], [frame], out, save_probabilities=True, device="cpu", progress=False)
    from PIL import Image

    with Image.open(frame) as src, Image.open(out) as m:
        assert m.size == src.size and m.mode == "L"
    prob = sitk.ReadImage(str(tmp_path / "f_prob.nii.gz"))
    assert prob.GetDimension() == 2 and prob.GetSize() == src.size


# --------------------------------------------------------------------------- --output


@pytest.mark.slow  # writes a DICOM SEG
def test_output_file_names(tiny_ckpts, ct_series, tmp_path, capsys):
    out = tmp_path / "res" / "mask.nii.gz"
    rc, _, err = _cli(capsys, "--checkpoint", tiny_ckpts["ct0"], "--output", out, "--overlay", ct_series)
    assert rc == 0, err
    assert out.is_file() and _listing(tmp_path / "res") == ["mask.nii.gz", "mask_overlay.png"]
    rc, _, err = _cli(capsys, "--checkpoint", tiny_ckpts["ct0"], "--output", tmp_path / "s.dcm", ct_series)
    assert rc == 0, err
    assert (tmp_path / "s.dcm").is_file() and pydicom.dcmread(str(tmp_path / "s.dcm")).Modality == "SEG"


@pytest.mark.parametrize("output, extra, words", [
    ("two.nii.gz", ["SECOND"], ["2 inputs", "folder"]),
    ("scan.png", [], ["a .png file cannot hold", "CT volume"]),
    ("pictures.jpg", [], ["looks like a file name"]),
    ("seg.dcm", ["--format", "nifti"], ["DICOM SEG", "nifti"]),
    ("m.nii.gz", ["--format", "dicom-seg"], [".dcm file or a folder"]),
])
def test_output_naming_refusals(tiny_ckpts, ct_series, tmp_path, capsys, output, extra, words):
    out = tmp_path / "o" / output
    second = tmp_path / "second"
    shutil.copytree(ct_series, second)
    extra = [str(second) if e == "SECOND" else e for e in extra]
    rc, _, err = _cli(capsys, "--checkpoint", tiny_ckpts["ct0"], "--output", out, *extra, ct_series)
    _one_line_error(rc, err, *words)
    assert _listing(tmp_path / "o") == []


def test_output_never_a_folder_named_like_a_file(tiny_ckpts, ct_series, tmp_path, capsys):
    (tmp_path / "m.nii.gz").mkdir()
    rc, _, err = _cli(capsys, "--checkpoint", tiny_ckpts["ct0"], "--output", tmp_path / "m.nii.gz",
                      ct_series)
    _one_line_error(rc, err, "m.nii.gz", "is a folder")
    assert _listing(tmp_path / "m.nii.gz") == []


# --------------------------------------------------------------------------- refused inputs


def _non_image(path: Path, sop_class: str, modality: str, pixels: bool = False) -> Path:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID, ds.StudyInstanceUID = generate_uid(), generate_uid()
    ds.Modality = modality
    if pixels:  # RT Dose carries a dose grid as pixel data
        ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 4, 4, 16, 16, 15
        ds.SamplesPerPixel, ds.PixelRepresentation = 1, 0
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.PixelData = np.zeros((4, 4), np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path


@pytest.mark.parametrize("uid, modality, pixels, cls", [
    ("1.2.840.10008.5.1.4.1.1.481.3", "RTSTRUCT", False, "RT Structure Set Storage"),
    ("1.2.840.10008.5.1.4.1.1.481.2", "RTDOSE", True, "RT Dose Storage"),
    ("1.2.840.10008.5.1.4.1.1.88.11", "SR", False, "Basic Text SR Storage"),
    ("1.2.840.10008.5.1.4.1.1.9.1.1", "ECG", False, "12-lead ECG Waveform Storage"),
])
def test_non_image_dicom_objects_are_refused(tiny_ckpts, tmp_path, capsys, uid, modality, pixels, cls):
    obj = _non_image(tmp_path / "object.dcm", uid, modality, pixels)
    out = tmp_path / "out"
    rc, _, err = _cli(capsys, "--checkpoint", tiny_ckpts["ct0"], "--output", out, obj)
    _one_line_error(rc, err, str(obj), cls, "not an image")
    folder = tmp_path / "study"  # also when found inside a folder
    folder.mkdir()
    shutil.copy(obj, folder / "x.dcm")
    rc, _, err = _cli(capsys, "--checkpoint", tiny_ckpts["ct0"], "--output", out, folder)
    _one_line_error(rc, err, str(folder / "x.dcm"), cls)
    assert _listing(out) == []


def test_a_segmentation_object_is_refused(tiny_ckpts, ct_series, tmp_path, capsys):
    seg = tmp_path / "made_seg.dcm"
    predict(tiny_ckpts["ct0"], [ct_series], seg, device="cpu", progress=False)
    out = tmp_path / "out"
    rc, _, err = _cli(capsys, "--checkpoint", tiny_ckpts["ct0"], "--output", out, seg)
    _one_line_error(rc, err, str(seg), "Segmentation Storage")
    assert _listing(out) == []


def _as_modality(series: Path, dest: Path, modality: str) -> Path:
    dest.mkdir()
    for f in series.glob("*.dcm"):
        ds = pydicom.dcmread(str(f))
        ds.Modality = modality
        ds.save_as(str(dest / f.name))
    return dest


def test_modality_must_match_the_checkpoint(tiny_ckpts, ct_series, tmp_path, capsys):
    mr = _as_modality(ct_series, tmp_path / "mr", "MR")
    out = tmp_path / "out"
    rc, _, err = _cli(capsys, "--checkpoint", tiny_ckpts["ct0"], "--output", out, mr)
    _one_line_error(rc, err, "modality MR", "CT", "--allow-modality-mismatch")
    assert _listing(out) == []
    rc, _, err = _cli(capsys, "--checkpoint", tiny_ckpts["ct0"], "--output", out,
                      "--allow-modality-mismatch", mr)
    assert rc == 0, err
    assert _listing(out) == ["mr_mask.nii.gz"]
    # a CT series into a BAGLS (endoscopy) checkpoint
    rc, _, err = _cli(capsys, "--checkpoint", tiny_ckpts["bagls"], "--output", tmp_path / "o2", ct_series)
    _one_line_error(rc, err, str(ct_series), "modality CT", "modality ES")
    assert _listing(tmp_path / "o2") == []


def test_dicom_seg_needs_a_dicom_input(tiny_ckpts, ct_series, tmp_path, capsys):
    nifti = tmp_path / "scan.nii.gz"
    sitk.WriteImage(sitk.ReadImage([str(p) for p in _sources_in_z_order(ct_series)]), str(nifti))
    out = tmp_path / "out"
    rc, _, err = _cli(capsys, "--checkpoint", tiny_ckpts["ct0"], "--output", out, "--format",
                      "dicom-seg", nifti)
    _one_line_error(rc, err, str(nifti), "DICOM input", "NIfTI")
    assert _listing(out) == []


def test_mc_refusal_is_one_line(tiny_ckpts, ct_series, tmp_path, capsys):
    rc, _, err = _cli(capsys, "--checkpoint", tiny_ckpts["heuristic"], "--output", tmp_path / "o",
                      "--mc-samples", "3", ct_series)
    _one_line_error(rc, err, "heuristic", "deterministic")
    assert _listing(tmp_path / "o") == []


# --------------------------------------------------------------------------- experiments


def _experiment(tmp_path: Path, ckpt: Path) -> Path:
    from medseg.experiments.results import COLUMNS, append_run

    exp = tmp_path / "exp"
    runs = [("unet", "dropout", '{"p": 0.5}', r) for r in range(3)] + [("unet", "none", "{}", 0)]
    for model, reg, params, repeat in runs:
        rel = f"runs/pancreas/{model}/{reg}/repeat{repeat}"
        (exp / rel / "checkpoints").mkdir(parents=True)
        shutil.copy(ckpt, exp / rel / "checkpoints" / "best.ckpt")
        rows = []
        for case in ("a", "b"):
            row = {c: "0" for c in COLUMNS}
            row.update(dataset="pancreas", model=model, regularizer=reg, params=params,
                       repeat=repeat, seed=repeat, case_id=case, dice=0.5, iou=0.3, run_dir=rel)
            rows.append(row)
        append_run(exp / "results.csv", rows)
    (exp / "experiment.yaml").write_text("name: exp\n")
    return exp


def test_experiment_method_takes_every_run(tiny_ckpts, tmp_path):
    exp = _experiment(tmp_path, tiny_ckpts["ct0"])
    for key in ("dropout (p=0.5)", "dropout_p=0.5", "unet/dropout_p=0.5", "pancreas/unet/dropout (p=0.5)"):
        found = method_checkpoints(exp, key)
        assert found == [exp / f"runs/pancreas/unet/dropout/repeat{r}/checkpoints/best.ckpt"
                         for r in range(3)], key
    assert method_checkpoints(exp, "none") == [exp / "runs/pancreas/unet/none/repeat0/checkpoints/best.ckpt"]


def test_experiment_method_errors(tiny_ckpts, tmp_path, capsys, ct_series):
    exp = _experiment(tmp_path, tiny_ckpts["ct0"])
    rc, _, err = _cli(capsys, "--experiment", exp, "--method", "dropblock", "--output",
                      tmp_path / "o", ct_series)
    _one_line_error(rc, err, "dropblock", "dropout_p=0.5", "none")
    rc, _, err = _cli(capsys, "--experiment", tmp_path, "--method", "none", "--output",
                      tmp_path / "o", ct_series)
    _one_line_error(rc, err, "not an experiment folder")
    rc, _, err = _cli(capsys, "--output", tmp_path / "o", ct_series)
    _one_line_error(rc, err, "--checkpoint", "--experiment")
    rc, stdout, err = _cli(capsys, "--experiment", exp, "--method", "dropout_p=0.5", "--output",
                           tmp_path / "o", "--tta", ct_series)
    assert rc == 0, err
    assert "ensemble of 3 checkpoints; 6 pass(es) averaged" in stdout  # 3 × (identity, x)
    assert _listing(tmp_path / "o") == [f"{ct_series.resolve().name}_mask.nii.gz"]
