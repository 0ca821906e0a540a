"""Physical and numerical sanity on input (issue 20, mechanism 4).

Values no scanner, label or trained checkpoint can hold are refused with one line naming
the file and the field, and ``data check`` reports them (exit 1, a line starting with the
file): DICOM rescale, spacing and photometric fields, NIfTI headers whose voxel sizes,
dimensions, orientation or voxel type make no sense, image sizes that cannot be
allocated, checkpoints whose weights are not finite, config values that are not finite
or out of range, seeds outside [0, 2**32 − 1]. File names that are not valid UTF-8
(SimpleITK aborts the process on them) are refused in one line; those cases run in a
child process, so that a regression aborts the child, not the suite.
``heuristic_dropout`` handles infinite and near-float32-maximum inputs exactly like its
reference and rejects non-tensors with a TypeError.
"""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hostile_helpers import edit_dicom, series_files, snapshot, tiny_run_config


def _entries(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ============================================================================ config values
#: override(s) → what the one line must name
CONFIG_CASES = {
    "lr_inf": (["train.lr=.inf"], "train.lr"),
    "lr_nan": (["train.lr=.nan"], "train.lr"),
    "lr_overflow_text": (["train.lr=1e999"], "train.lr"),
    "lr_negative_inf": (["train.lr=-.inf"], "train.lr"),
    "weight_decay_inf": (["train.weight_decay=.inf"], "train.weight_decay"),
    "eps_inf": (["train.eps=.inf"], "train.eps"),
    "eps_nan": (["train.eps=.nan"], "train.eps"),
    "betas_nan": (["train.betas=[0.9,.nan]"], "train.betas"),
    "poly_exponent_inf": (["train.poly_exponent=.inf"], "train.poly_exponent"),
    "nsd_tolerance_inf": (["eval.nsd_tolerance_mm=.inf"], "eval.nsd_tolerance_mm"),
    "empty_hd95_inf": (["eval.empty_hd95=.inf"], "eval.empty_hd95"),
    "missing_hd95_inf": (["eval.missing_hd95=.inf"], "eval.missing_hd95"),
    "empty_score_nan": (["eval.empty_score=.nan"], "eval.empty_score"),
    "foreground_prior_inf": (["model.foreground_prior=.inf"], "model.foreground_prior"),
    "foreground_fraction_nan": (["data.foreground_fraction=.nan"], "data.foreground_fraction"),
    "window_low_inf": (["data.window=[-.inf,240]"], "data.window"),
    "window_high_inf": (["data.window=[-100,.inf]"], "data.window"),
    "window_nan": (["data.window=[.nan,240]"], "data.window"),
    "window_equal": (["data.window=[100,100]"], "data.window"),
    "window_reversed": (["data.window=[240,-100]"], "data.window"),
    "heuristic_k_inf": (["regularizer.name=heuristic", "regularizer.k=.inf"], "k must"),
    "heuristic_eps_nan": (["regularizer.name=heuristic", "regularizer.eps=.nan"], "eps must"),
    "heuristic_rate_inf": (["regularizer.name=heuristic", "regularizer.rate=-.inf"], "rate must"),
    "dropout_p_inf": (["regularizer.name=dropout", "regularizer.p=.inf"], "p must"),
    "seed_2_32": (["seed=4294967296"], "seed"),
    "seed_huge": (["seed=99999999999999999999"], "seed"),
    "seed_negative": (["seed=-1"], "seed"),
    "split_seed_2_32": (["data.split_seed=4294967296"], "data.split_seed"),
    "split_seed_negative": (["data.split_seed=-7"], "data.split_seed"),
    "devices_empty_list": (["train.devices=[]"], "train.devices"),
    "devices_repeated": (["train.devices=[0,0]"], "train.devices"),
    "devices_negative_index": (["train.devices=[-1]"], "train.devices"),
    "devices_zero": (["train.devices=0"], "train.devices"),
    "devices_text": (["train.devices=two"], "train.devices"),
    "strategy_unknown": (["train.strategy=fastest"], "train.strategy"),
    "strategy_typo": (["train.strategy=dpp"], "train.strategy"),
    "size_below_depth": (["data.size=[16,16]", "model.depth=5"], "data.size"),
    "size_not_divisible": (["data.size=[24,24]", "model.depth=4"], "data.size"),
    "size_one_side": (["data.size=[32,20]", "model.depth=3"], "data.size"),
    "size_unet3plus": (["model.name=unet3plus", "data.size=[8,8]", "model.depth=4"], "data.size"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_config_values_that_make_no_sense_are_one_line_naming_the_key(cli, config_file, tmp_path, case):
    overrides, key = CONFIG_CASES[case]
    cfg = config_file()
    before = _entries(tmp_path)
    r = cli("train", "--config", cfg, "--out", tmp_path / "run", "--no-progress", *overrides)
    r.one_error_line(key)
    assert _entries(tmp_path) == before


@pytest.mark.parametrize("case", ["size_below_depth", "lr_inf", "seed_2_32"])
def test_config_show_refuses_the_same_values(cli, config_file, case):
    overrides, key = CONFIG_CASES[case]
    r = cli("config", "show", config_file(), *overrides)
    r.one_error_line(key)
    assert r.out == ""


@pytest.mark.parametrize("value", ["4294967295", "0"])
def test_seed_bounds_are_accepted(value):
    from medseg.config import load_config

    from hostile_helpers import tiny_run_config  # noqa: F401 - the suite's helpers import

    cfg = load_config(None, [f"seed={value}", "data.dataset=pancreas", "data.root=x"])
    assert cfg["seed"] == int(value)


# ============================================================================ command seeds
@pytest.mark.parametrize("seed", ["-1", "4294967296"])
@pytest.mark.parametrize("dataset", ["pancreas", "bagls", "abdomen"])
def test_data_synth_refuses_a_seed_out_of_range_before_writing(cli, tmp_path, dataset, seed):
    out = tmp_path / "synth"
    r = cli("data", "synth", dataset, "--out", out, "--seed", seed)
    r.one_error_line("--seed", seed)
    assert _entries(tmp_path) == []


@pytest.mark.parametrize("seed", ["-1", "4294967296"])
def test_coadapt_refuses_a_seed_out_of_range_first(cli, tmp_path, seed):
    r = cli("coadapt", tmp_path / "no_run", "--seed", seed, "--out", tmp_path / "co")
    r.one_error_line("--seed", seed)
    assert _entries(tmp_path) == []


@pytest.mark.parametrize("seed", ["-1", "4294967296"])
def test_predict_refuses_a_seed_out_of_range_first(cli, tmp_path, seed):
    r = cli("predict", "--checkpoint", tmp_path / "no.ckpt", tmp_path / "scan.nii.gz", "--output",
            tmp_path / "out", "--seed", seed)
    r.one_error_line("--seed", seed)
    assert _entries(tmp_path) == []


# ============================================================================ DICOM headers
#: name → (tag, value, words the line holds besides the file)
DICOM_CASES = {
    "rescale_slope_zero": ("RescaleSlope", "0", "RescaleSlope is 0"),
    "rescale_slope_nan": ("RescaleSlope", "NaN", "RescaleSlope"),
    "rescale_slope_absurd": ("RescaleSlope", "1e30", "RescaleSlope"),
    "rescale_slope_tiny": ("RescaleSlope", "1e-30", "RescaleSlope"),
    "rescale_slope_negative": ("RescaleSlope", "-1", "RescaleSlope"),
    "rescale_intercept_absurd": ("RescaleIntercept", "-1e30", "RescaleIntercept"),
    "rescale_intercept_inf": ("RescaleIntercept", "inf", "RescaleIntercept"),
    "pixel_spacing_zero": ("PixelSpacing", ["0", "0.7"], "PixelSpacing"),
    "pixel_spacing_negative": ("PixelSpacing", ["0.7", "-0.7"], "PixelSpacing"),
    "pixel_spacing_absurd": ("PixelSpacing", ["1e9", "0.7"], "PixelSpacing"),
    "pixel_spacing_inf": ("PixelSpacing", ["inf", "0.7"], "PixelSpacing"),
    "pixel_spacing_nan": ("PixelSpacing", ["0.7", "NaN"], "PixelSpacing"),
    "slice_thickness_zero": ("SliceThickness", "0", "SliceThickness"),
    "slice_thickness_negative": ("SliceThickness", "-2.5", "SliceThickness"),
    "slice_thickness_absurd": ("SliceThickness", "1e12", "SliceThickness"),
    "spacing_between_slices_zero": ("SpacingBetweenSlices", "0", "SpacingBetweenSlices"),
    "palette_colour": ("PhotometricInterpretation", "PALETTE COLOR", "PALETTE COLOR"),
    "rgb_photometric": ("PhotometricInterpretation", "RGB", "PhotometricInterpretation"),
    "ybr_photometric": ("PhotometricInterpretation", "YBR_FULL", "PhotometricInterpretation"),
    "no_frames": ("NumberOfFrames", 0, "no frames"),
    "no_rows": ("Rows", 0, "no pixels"),
    "no_columns": ("Columns", 0, "no pixels"),
}


def _damage_dicom(root, case):
    tag, value, _ = DICOM_CASES[case]
    f = series_files(root)[2]
    edit_dicom(f, **{tag: value})
    return f


@pytest.mark.parametrize("case", sorted(DICOM_CASES))
def test_data_check_reports_an_impossible_dicom_header(cli, pancreas_copy, case):
    bad = _damage_dicom(pancreas_copy, case)
    r = cli("data", "check", "pancreas", pancreas_copy)
    assert r.rc == 1, (r.rc, r.out, r.err)
    assert "Traceback" not in r.err + r.out and r.err.strip() == ""
    problems = [ln for ln in r.out.splitlines() if ln.startswith(str(bad))]
    assert problems, r.out
    assert DICOM_CASES[case][2] in problems[0], problems
    assert r.out.strip().splitlines()[-1].startswith("FAILED: 1 of 3")


@pytest.mark.parametrize("case", sorted(DICOM_CASES))
def test_data_prepare_refuses_an_impossible_dicom_header(cli, pancreas_copy, config_file, tmp_path, case):
    bad = _damage_dicom(pancreas_copy, case)
    split_out = tmp_path / "split.json"
    r = cli("data", "prepare", "--config", config_file(dataset_root=pancreas_copy), "--split-out", split_out)
    line = r.one_error_line(str(bad))
    assert DICOM_CASES[case][2] in line
    assert not split_out.exists()


@pytest.mark.parametrize("case", ["rescale_slope_zero", "pixel_spacing_zero", "palette_colour"])
def test_the_reader_refuses_what_data_check_reports(pancreas_copy, case):
    from medseg.data.ct import read_ct_volume
    from medseg.errors import DataError

    bad = _damage_dicom(pancreas_copy, case)
    with pytest.raises(DataError, match=DICOM_CASES[case][2]) as err:
        read_ct_volume(pancreas_copy / "Pancreas-CT" / "PANCREAS_0001")
    assert str(bad) in str(err.value)


def test_hu_beyond_any_scanner_are_refused_naming_the_series(cli, pancreas_copy):
    """Slope and intercept each at their bound give HU no CT holds: refused by the values."""
    for f in series_files(pancreas_copy):
        edit_dicom(f, RescaleSlope="1000", RescaleIntercept="99999")
    series = series_files(pancreas_copy)[0].parent
    r = cli("data", "check", "pancreas", pancreas_copy)
    assert r.rc == 1 and "Traceback" not in r.err + r.out
    problems = [ln for ln in r.out.splitlines() if ln.startswith(str(series))]
    assert problems and "HU values reach" in problems[0], r.out


@pytest.mark.parametrize("modality,refused", [("CT", True), ("MR", False)])
def test_a_small_rescale_slope_is_a_ct_problem_only(pancreas_copy, modality, refused):
    """An MR series (an nnunet checkpoint may take one) scales freely; a CT's slope of 1e-4 HU
    per stored unit is no scanner's."""
    from medseg.data.ct import read_ct_volume
    from medseg.errors import DataError

    for f in series_files(pancreas_copy):
        edit_dicom(f, Modality=modality, RescaleSlope="0.0001")
    series = pancreas_copy / "Pancreas-CT" / "PANCREAS_0001"
    if refused:
        with pytest.raises(DataError, match="RescaleSlope is 0.0001"):
            read_ct_volume(series)
    else:
        hu, _ = read_ct_volume(series)
        assert np.isfinite(hu).all() and hu.shape[0] == len(series_files(pancreas_copy))


def test_a_plausible_rescale_is_read_as_hu(pancreas_copy):
    """Control: slope 2 and intercept −1000 are a scanner's; HU = stored · 2 − 1000."""
    import pydicom

    from medseg.data.ct import read_ct_volume

    series = pancreas_copy / "Pancreas-CT" / "PANCREAS_0001"
    for f in series_files(pancreas_copy):
        edit_dicom(f, RescaleSlope="2", RescaleIntercept="-1000")
    hu, _ = read_ct_volume(series)
    one = pydicom.dcmread(series_files(pancreas_copy)[0])
    stored = one.pixel_array.astype(np.float32)
    assert np.allclose(np.sort(hu.reshape(hu.shape[0], -1), axis=1),
                       np.sort(hu.reshape(hu.shape[0], -1), axis=1))
    assert any(np.allclose(hu[k], stored * 2 - 1000) for k in range(hu.shape[0]))


# ============================================================================ NIfTI headers
_DIM, _DATATYPE, _BITPIX, _PIXDIM, _VOX_OFFSET = 40, 70, 72, 76, 108
_SCL_SLOPE, _QUATERN_B, _SROW_X = 112, 256, 280


def _patch_nifti(path: Path, **fields) -> None:
    """Write raw NIfTI-1 header fields (nibabel and ITK would 'fix' them on the way)."""
    gz = path.name.endswith(".gz")
    raw = bytearray(gzip.decompress(path.read_bytes()) if gz else path.read_bytes())
    for name, value in fields.items():
        if name == "dim":
            struct.pack_into("<8h", raw, _DIM, *value)
        elif name.startswith("pixdim"):
            struct.pack_into("<f", raw, _PIXDIM + 4 * int(name[-1]), value)
        elif name == "srow_x3":
            struct.pack_into("<f", raw, _SROW_X + 12, value)
        elif name == "quatern_b":
            struct.pack_into("<f", raw, _QUATERN_B, value)
        elif name == "scl_slope":
            struct.pack_into("<f", raw, _SCL_SLOPE, value)
        else:
            raise KeyError(name)
    path.write_bytes(gzip.compress(bytes(raw)) if gz else bytes(raw))


def _label(root) -> Path:
    return root / "TCIA_pancreas_labels-02-05-2017" / "label0001.nii.gz"


def _label_dims(path):
    import nibabel as nib

    with (gzip.open(path) if path.name.endswith(".gz") else open(path, "rb")) as fh:
        return [int(v) for v in nib.Nifti1Header.from_fileobj(fh, check=False)["dim"]]


#: name → (damage of a .nii.gz, words of the line)
NIFTI_CASES = {
    "pixdim_zero": (lambda f: _patch_nifti(f, pixdim1=0.0), "pixdim"),
    "pixdim_nan": (lambda f: _patch_nifti(f, pixdim2=float("nan")), "pixdim"),
    "pixdim_inf": (lambda f: _patch_nifti(f, pixdim3=float("inf")), "pixdim"),
    "pixdim_negative": (lambda f: _patch_nifti(f, pixdim3=-2.5), "pixdim"),
    "pixdim_absurd": (lambda f: _patch_nifti(f, pixdim1=1e30), "pixdim"),
    "no_slices": (lambda f: _patch_nifti(f, dim=[3, *_label_dims(f)[1:3], 0, 1, 1, 1, 1]), "no slices"),
    "no_columns": (lambda f: _patch_nifti(f, dim=[3, 0, *_label_dims(f)[2:4], 1, 1, 1, 1]), "no voxels"),
    "sform_nan": (lambda f: _patch_nifti(f, srow_x3=float("nan")), "not finite"),
    "qform_inf": (lambda f: _patch_nifti(f, quatern_b=float("inf")), "not finite"),
    "cannot_be_allocated": (lambda f: _patch_nifti(f, dim=[3, 30000, 30000, 30000, 1, 1, 1, 1]),
                            "cannot be allocated"),
}


@pytest.mark.parametrize("case", sorted(NIFTI_CASES))
def test_data_check_reports_an_impossible_nifti_label_header(cli, pancreas_copy, case):
    bad = _label(pancreas_copy)
    NIFTI_CASES[case][0](bad)
    r = cli("data", "check", "pancreas", pancreas_copy)
    assert r.rc == 1, (r.rc, r.out, r.err)
    assert "Traceback" not in r.err + r.out
    problems = [ln for ln in r.out.splitlines() if ln.startswith(str(bad))]
    assert problems, r.out
    assert NIFTI_CASES[case][1] in problems[0], problems


@pytest.mark.parametrize("case", ["pixdim_zero", "no_slices", "cannot_be_allocated"])
def test_data_prepare_refuses_an_impossible_nifti_label_header(cli, pancreas_copy, config_file, tmp_path, case):
    bad = _label(pancreas_copy)
    NIFTI_CASES[case][0](bad)
    split_out = tmp_path / "split.json"
    r = cli("data", "prepare", "--config", config_file(dataset_root=pancreas_copy), "--split-out", split_out)
    line = r.one_error_line(str(bad))
    assert NIFTI_CASES[case][1] in line
    assert not split_out.exists()


def _ct_nifti(path: Path, dtype=np.int16) -> Path:
    """A small CT volume (32×32×6, 0.8×0.8×2.5 mm) as NIfTI."""
    import nibabel as nib

    rng = np.random.default_rng(0)
    data = rng.integers(-1000, 1000, size=(32, 32, 6)).astype(dtype)
    nib.save(nib.Nifti1Image(data, np.diag([0.8, 0.8, 2.5, 1.0])), str(path))
    return path


@pytest.mark.parametrize("case", ["pixdim_zero", "pixdim_nan", "no_slices", "sform_nan"])
def test_an_uncompressed_nifti_volume_is_checked_like_a_compressed_one(tmp_path, case):
    from medseg.data.ct import read_ct_volume
    from medseg.errors import DataError

    f = _ct_nifti(tmp_path / "scan.nii")
    NIFTI_CASES[case][0](f)
    with pytest.raises(DataError, match=NIFTI_CASES[case][1]) as err:
        read_ct_volume(f)
    assert str(f) in str(err.value)


@pytest.mark.parametrize("how", ["scl_slope", "stored"])
def test_a_ct_nifti_beyond_any_scanner_is_refused(tmp_path, how):
    import nibabel as nib

    from medseg.data.ct import read_ct_volume
    from medseg.errors import DataError

    f = tmp_path / "scan.nii.gz"
    if how == "scl_slope":
        _ct_nifti(f)
        _patch_nifti(f, scl_slope=1e30)
    else:
        data = np.zeros((8, 8, 3), np.float32)
        data[1, 1, 1] = 3e30
        nib.save(nib.Nifti1Image(data, np.eye(4)), str(f))
    with pytest.raises(DataError, match="beyond any CT scanner") as err:
        read_ct_volume(f)
    assert str(f) in str(err.value)


def test_a_nan_scl_slope_means_unscaled_as_the_nifti_standard_reads_it(tmp_path):
    """Control: NaN (or 0) in scl_slope is NIfTI's 'no scaling' (nibabel and ITK agree), not damage."""
    import nibabel as nib

    from medseg.data.ct import read_ct_volume

    f = _ct_nifti(tmp_path / "scan.nii.gz")
    stored = np.asarray(nib.load(str(f)).dataobj)
    _patch_nifti(f, scl_slope=float("nan"))
    hu, _ = read_ct_volume(f)
    assert np.array_equal(np.sort(hu.ravel()), np.sort(stored.astype(np.float32).ravel()))


def test_a_truncated_uncompressed_nifti_is_refused_from_its_header(tmp_path):
    from medseg.data.ct import read_ct_volume
    from medseg.errors import DataError

    f = _ct_nifti(tmp_path / "scan.nii")
    _patch_nifti(f, dim=[3, 32, 32, 600, 1, 1, 1, 1])  # promises 100× the voxels it holds
    with pytest.raises(DataError, match="truncated NIfTI file"):
        read_ct_volume(f)


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_a_complex_nifti_presented_as_ct_is_refused(tmp_path, dtype):
    import nibabel as nib

    from medseg.data.ct import read_ct_volume
    from medseg.errors import DataError

    f = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((8, 8, 3), dtype), np.eye(4)), str(f))
    with pytest.raises(DataError, match="complex"):
        read_ct_volume(f)


def test_a_colour_nifti_presented_as_ct_is_refused(tmp_path):
    import nibabel as nib

    from medseg.data.ct import read_ct_volume
    from medseg.errors import DataError

    f = tmp_path / "scan.nii.gz"
    rgb = np.zeros((8, 8, 3), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), str(f))
    with pytest.raises(DataError, match="colour|components"):
        read_ct_volume(f)


def test_a_plausible_nifti_is_read(tmp_path):
    """Control: the same file undamaged reads with its spacing."""
    from medseg.data.ct import read_ct_volume

    hu, geometry = read_ct_volume(_ct_nifti(tmp_path / "scan.nii.gz"))
    assert hu.shape == (6, 32, 32)
    assert np.allclose(geometry.spacing, (0.8, 0.8, 2.5))


# ============================================================================ checkpoints
def _fake_checkpoint(path: Path, root: Path, cache: Path, *, weight=None, meta=None) -> Path:
    """A medseg checkpoint of the tiny model without training: fresh weights and the run's
    metadata; ``weight`` (name, value) poisons one entry, ``meta`` edits the metadata."""
    from medseg.training.checkpoint import medseg_metadata
    from medseg.training.module import SegmentationModule

    cfg = tiny_run_config(root, cache)
    state = SegmentationModule(cfg).state_dict()
    if weight is not None:
        name, value = weight
        key = next(k for k in state if k.startswith("model.") and name in k)
        state[key].view(-1)[0] = value
    metadata = medseg_metadata(cfg)
    if meta is not None:
        meta(metadata)
    torch.save({"state_dict": state, "medseg": metadata, "epoch": 0}, path)
    return path


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("where", ["weight", "bias", "running_var"])
def test_a_checkpoint_whose_weights_are_not_finite_is_refused_on_load(tmp_path, tiny_pancreas, value, where):
    from medseg.errors import CheckpointError
    from medseg.training.checkpoint import build_model_from_checkpoint, load_checkpoint

    ckpt = _fake_checkpoint(tmp_path / "bad.ckpt", tiny_pancreas, tmp_path / "cache", weight=(where, value))
    for load in (load_checkpoint, build_model_from_checkpoint):
        with pytest.raises(CheckpointError, match="NaN/infinite") as err:
            load(ckpt)
        assert str(ckpt) in str(err.value) and where in str(err.value)


def test_predict_refuses_a_checkpoint_with_nan_weights_before_writing(cli, tmp_path, tiny_pancreas):
    ckpt = _fake_checkpoint(tmp_path / "bad.ckpt", tiny_pancreas, tmp_path / "cache",
                            weight=("weight", float("nan")))
    scan = _ct_nifti(tmp_path / "scan.nii.gz")
    r = cli("predict", "--checkpoint", ckpt, "--output", tmp_path / "out", scan, "--no-progress")
    r.one_error_line(str(ckpt), "NaN/infinite")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("window", [[float("nan"), 240.0], [-100.0, float("inf")], [240.0, -100.0]])
def test_predict_refuses_a_checkpoint_with_an_impossible_window(cli, tmp_path, tiny_pancreas, window):
    def edit(meta):
        meta["preprocessing"]["window"] = window

    ckpt = _fake_checkpoint(tmp_path / "bad.ckpt", tiny_pancreas, tmp_path / "cache", meta=edit)
    scan = _ct_nifti(tmp_path / "scan.nii.gz")
    r = cli("predict", "--checkpoint", ckpt, "--output", tmp_path / "out", scan, "--no-progress")
    r.one_error_line(str(ckpt), "preprocessing.window")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", ["rescale_slope_zero", "pixel_spacing_zero", "palette_colour", "no_rows"])
def test_predict_refuses_an_impossible_dicom_input_before_writing(cli, tmp_path, tiny_pancreas, pancreas_copy,
                                                                  case):
    ckpt = _fake_checkpoint(tmp_path / "good.ckpt", tiny_pancreas, tmp_path / "cache")
    bad = _damage_dicom(pancreas_copy, case)
    r = cli("predict", "--checkpoint", ckpt, "--output", tmp_path / "out", bad.parent, "--no-progress")
    line = r.one_error_line(str(bad))
    assert DICOM_CASES[case][2] in line
    assert not (tmp_path / "out").exists()


def test_predict_with_a_finite_fake_checkpoint_works(cli, tmp_path, tiny_pancreas):
    """Control for the two cases above: the same checkpoint with finite weights predicts."""
    ckpt = _fake_checkpoint(tmp_path / "good.ckpt", tiny_pancreas, tmp_path / "cache")
    scan = _ct_nifti(tmp_path / "scan.nii.gz")
    r = cli("predict", "--checkpoint", ckpt, "--output", tmp_path / "out", scan, "--no-progress")
    assert r.rc == 0, r.err
    assert (tmp_path / "out" / "scan_mask.nii.gz").is_file()


@pytest.mark.parametrize("case", ["pixdim_zero", "no_slices", "cannot_be_allocated", "sform_nan"])
def test_predict_refuses_an_impossible_nifti_input_before_writing(cli, tmp_path, tiny_pancreas, case):
    ckpt = _fake_checkpoint(tmp_path / "good.ckpt", tiny_pancreas, tmp_path / "cache")
    scan = _ct_nifti(tmp_path / "scan.nii.gz")
    NIFTI_CASES[case][0](scan)
    r = cli("predict", "--checkpoint", ckpt, "--output", tmp_path / "out", scan, "--no-progress")
    r.one_error_line(str(scan), NIFTI_CASES[case][1])
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_evaluate_refuses_a_best_checkpoint_with_nan_weights_and_keeps_the_metrics(cli, run_copy):
    best = run_copy / "checkpoints" / "best.ckpt"
    ckpt = torch.load(best, weights_only=True)
    key = next(k for k, v in ckpt["state_dict"].items() if v.is_floating_point())
    ckpt["state_dict"][key].view(-1)[0] = float("nan")
    torch.save(ckpt, best)
    before = snapshot(run_copy)
    r = cli("evaluate", run_copy, "--no-progress")
    r.one_error_line(str(best), key)
    assert snapshot(run_copy) == before


@pytest.mark.slow
def test_resume_skips_a_last_checkpoint_with_inf_weights(cli, run_copy, tmp_path):
    import yaml

    last = run_copy / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    key = next(k for k, v in ckpt["state_dict"].items() if v.is_floating_point())
    ckpt["state_dict"][key].view(-1)[0] = float("inf")
    ckpt["epoch"] = 7  # the newest: it would be chosen if it were not refused
    torch.save(ckpt, last)
    cfg = yaml.safe_load((run_copy / "config.yaml").read_text())
    cfg["train"]["epochs"] = 2
    f = tmp_path / "resume.yaml"
    f.write_text(yaml.safe_dump(cfg))
    r = cli("train", "--config", f, "--out", run_copy, "--resume", "--no-progress")
    assert r.rc == 0, r.err
    assert f"skipped {last}" in r.err and "NaN/infinite" in r.err
    assert f"resuming from {run_copy / 'checkpoints' / 'best.ckpt'}" in r.out
    assert bool(torch.isfinite(torch.load(last, weights_only=True)["state_dict"][key]).all())


# ============================================================================ non-UTF-8 names
_BAD = b"scan\xff"


def _child(*argv, cwd):
    """``medseg argv`` in a child process (an ITK abort would kill it with SIGABRT, not us)."""
    return subprocess.run([sys.executable, "-m", "medseg", *argv], cwd=cwd, capture_output=True, timeout=300)


def _one_line(proc, rc=2, *names: bytes):
    assert proc.returncode == rc, (proc.returncode, proc.stderr[-2000:])
    assert b"Traceback" not in proc.stderr + proc.stdout
    if rc == 2:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith(b"medseg: error: "), proc.stderr
        for n in names:
            assert n in lines[0], (n, lines[0])


@pytest.mark.parametrize("given", ["file", "folder"])
def test_predict_a_non_utf8_file_name_is_one_line_and_leaves_nothing(tmp_path, tiny_pancreas, given):
    ckpt = _fake_checkpoint(tmp_path / "good.ckpt", tiny_pancreas, tmp_path / "cache")
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    scan = _ct_nifti(tmp_path / "tmp.nii.gz")
    bad = os.path.join(os.fsencode(inputs), _BAD + b".nii.gz")
    os.rename(scan, bad)
    arg = bad if given == "file" else os.fsencode(inputs)
    before = _entries(tmp_path)
    proc = _child("predict", "--checkpoint", str(ckpt), "--output", str(tmp_path / "out"), os.fsdecode(arg),
                  "--no-progress", cwd=tmp_path)
    _one_line(proc, 2, b"not valid UTF-8", b"scan\\xff")
    assert _entries(tmp_path) == before  # no output folder, no temporary folder


def test_data_check_with_a_non_utf8_file_name_reports_it(tmp_path):
    proc = _child("data", "synth", "abdomen", "--out", "raw", "--cases", "2", "--test-cases", "0",
                  "--size", "32", "--slices", "4", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    images = tmp_path / "raw" / "Dataset901_SynthAbdomen" / "imagesTr"
    first = sorted(images.iterdir())[0]
    os.rename(first, os.path.join(os.fsencode(images), b"abdomen_\xff01_0000.nii.gz"))
    proc = _child("data", "check", "nnunet", str(images.parent), cwd=tmp_path)
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    assert b"Traceback" not in proc.stderr + proc.stdout
    assert b"abdomen_\\xff01" in proc.stdout and proc.stdout.strip().splitlines()[-1].startswith(b"FAILED")


def test_the_reader_refuses_a_non_utf8_name_before_itk(tmp_path):
    code = ("import os, sys\n"
            "from medseg.data.ct import read_ct_volume\n"
            "from medseg.errors import DataError\n"
            "try:\n"
            "    read_ct_volume(os.fsdecode(sys.argv[1].encode() + b'\\xff.nii.gz'))\n"
            "except DataError as exc:\n"
            "    print(exc); sys.exit(3)\n")
    scan = _ct_nifti(tmp_path / "x.nii.gz")
    os.rename(scan, os.path.join(os.fsencode(tmp_path), b"scan\xff.nii.gz"))
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "scan")], capture_output=True, timeout=300)
    assert proc.returncode == 3, (proc.returncode, proc.stderr[-2000:])
    assert b"not valid UTF-8" in proc.stdout


# ============================================================================ heuristic_dropout
def _same(ref: torch.Tensor, fast: torch.Tensor) -> None:
    """Equal where the reference is ±inf or NaN, close elsewhere (float rounding of the Laplace)."""
    assert torch.equal(torch.isnan(ref), torch.isnan(fast)), (int(torch.isnan(ref).sum()), int(torch.isnan(fast).sum()))
    assert torch.equal(torch.isposinf(ref), torch.isposinf(fast))
    assert torch.equal(torch.isneginf(ref), torch.isneginf(fast))
    finite = torch.isfinite(ref)
    assert torch.allclose(ref[finite], fast[finite], rtol=1e-5, atol=1e-4 * max(1.0, float(ref[finite].abs().max()
                                                                                           if finite.any() else 1)))


def _hostile(shape, kind, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g)
    flat = x.view(-1)
    if kind == "inf":
        flat[3] = float("inf")
    elif kind == "neg_inf":
        flat[5] = float("-inf")
    elif kind == "both_inf":
        flat[3], flat[7] = float("inf"), float("-inf")
    elif kind == "near_max_channel":
        x[0, 1] = 3.3e38
        x[0, 1].view(-1)[0] = 1e38
    elif kind == "near_max_everywhere":
        x = x * 3.4e38
    elif kind == "large_constant":
        x[:, 0] = 3.0e38
    return x


KINDS = ["inf", "neg_inf", "both_inf", "near_max_channel", "near_max_everywhere", "large_constant"]
SHAPES = [(2, 8, 6, 6), (1, 6, 3, 5, 5), (2, 5, 1, 1)]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", SHAPES, ids=["2d", "3d", "one_position"])
@pytest.mark.parametrize("mask", ["laplace", "zero"])
@pytest.mark.parametrize("skip_constant", [False, True])
def test_heuristic_dropout_matches_its_reference_on_extreme_inputs(kind, shape, mask, skip_constant):
    from medseg.regularizers.heuristic import heuristic_dropout, heuristic_dropout_reference

    x = _hostile(shape, kind)
    ref = heuristic_dropout_reference(x, rate=0.5, mask=mask, skip_constant=skip_constant)
    fast = heuristic_dropout(x, rate=0.5, mask=mask, skip_constant=skip_constant)
    _same(ref, fast)


@pytest.mark.parametrize("kind", ["inf", "both_inf", "near_max_everywhere"])
def test_heuristic_dropout_gives_inf_not_nan_where_the_reference_does(kind):
    """The issue's case: a plane with an infinite value (or near the float32 maximum) was NaN."""
    from medseg.regularizers.heuristic import heuristic_dropout, heuristic_dropout_reference

    x = _hostile((2, 8, 6, 6), kind)
    ref = heuristic_dropout_reference(x, rate=0.5)
    fast = heuristic_dropout(x, rate=0.5)
    assert torch.isinf(ref).any()
    assert int(torch.isnan(fast).sum()) == int(torch.isnan(ref).sum())
    _same(ref, fast)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mask", ["laplace", "zero"])
def test_the_fused_relu_module_matches_the_reference_on_extreme_inputs(kind, mask):
    import torch.nn.functional as F

    from medseg.regularizers.heuristic import HeuristicDropout, heuristic_dropout_reference

    x = _hostile((2, 8, 6, 6), kind)
    module = HeuristicDropout(rate=0.5, mask=mask)
    module.fuse_relu()
    module.train()
    _same(heuristic_dropout_reference(F.relu(x), rate=0.5, mask=mask), module(x.clone()))
    plain = HeuristicDropout(rate=0.5, mask=mask).train()
    _same(heuristic_dropout_reference(x, rate=0.5, mask=mask), plain(x.clone()))


def test_heuristic_statistics_do_not_overflow_in_float32():
    """The variance of values near the float32 maximum is the reference's (float64), not inf."""
    from medseg.regularizers.heuristic import channel_statistics

    x = _hostile((1, 3, 4, 4), "large_constant")
    x[0, 1] = torch.from_numpy(np.linspace(-3e38, 3e38, 16)).float().view(4, 4)
    _, variance = channel_statistics(x)
    expected = x.to(torch.float64).flatten(2).var(dim=2)
    assert torch.allclose(variance.to(torch.float64), expected, rtol=1e-6)
    assert variance[0, 0] == 0 and torch.isfinite(variance).all()


@pytest.mark.parametrize("bad", [[1.0, 2.0], [[[[1.0]]]], (1, 2), np.zeros((1, 2, 3, 3), np.float32), 3.0, None],
                         ids=["list", "nested_list", "tuple", "numpy", "float", "none"])
def test_heuristic_dropout_rejects_non_tensors_with_a_type_error(bad):
    from medseg.regularizers.heuristic import (HeuristicDropout, heuristic_dropout,
                                               heuristic_dropout_reference)

    for call in (lambda: heuristic_dropout(bad), lambda: heuristic_dropout(bad, training=False),
                 lambda: heuristic_dropout_reference(bad), lambda: HeuristicDropout().train()(bad),
                 lambda: HeuristicDropout().eval()(bad)):
        with pytest.raises(TypeError, match="torch.Tensor"):
            call()
