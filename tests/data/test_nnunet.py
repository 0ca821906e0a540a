"""nnU-Net v2 raw datasets: dataset.json (v2 and Decathlon), discovery, reading, the integrity
check (`medseg data check nnunet`), fingerprint and plan."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from medseg.data.check import check_dataset
from medseg.data.nnunet import (DatasetDescription, builtin_description, describe_dataset,
                                discover_nnunet, load_nnunet_case, read_description)
from medseg.data.plan import (fingerprint, from_slices, make_plan, normalise, plan_dataset,
                              slice_spacing, to_slices)
from medseg.errors import DataError

from nnunet_helpers import sphere_case, write_nnunet, write_nnunet_png


@pytest.fixture()
def ds(tmp_path) -> Path:
    return write_nnunet(tmp_path / "Dataset001_Tiny", cases=4, ras_every=2, test_cases=1)


def _edit_json(root: Path, **changes) -> None:
    meta = json.loads((root / "dataset.json").read_text())
    meta.update(changes)
    for k in [k for k, v in changes.items() if v is None]:
        del meta[k]
    (root / "dataset.json").write_text(json.dumps(meta))


# ----------------------------------------------------------------------------- dataset.json
def test_v2_description(ds):
    d = read_description(ds)
    assert d.channels == ("CT", "CT") and d.num_training == 4 and d.file_ending == ".nii.gz"
    assert d.labels == {"background": 0, "organ1": 1, "organ2": 2, "organ3": 3}
    assert d.foreground == [("organ1", 1), ("organ2", 2), ("organ3", 3)] and d.num_classes == 4
    assert d.modality == "CT" and not d.notes
    assert DatasetDescription.from_dict(d.to_dict()) == d


def test_decathlon_description_and_cases(tmp_path):
    root = write_nnunet(tmp_path / "Task01_Tiny", cases=3, channels=("CT",), decathlon=True)
    d = read_description(root)
    assert d.channels == ("CT",) and d.labels["organ2"] == 2
    cases = discover_nnunet(root, d)
    assert [c.case_id for c in cases] == ["case_000", "case_001", "case_002"]
    case = load_nnunet_case(cases[1], d)
    assert case.image.shape == (1, 10, 24, 24) and set(np.unique(case.label)) <= {0, 1, 2, 3}


@pytest.mark.parametrize("change, words", [
    ({"regions_class_order": [1, 2]}, "region-based training"),
    ({"labels": {"background": 0, "whole": [1, 2]}}, "is a region"),
    ({"labels": {"background": 0, "organ": 1, "ignore": 2}}, "'ignore' label"),
    ({"labels": {"background": 0, "organ": 2}}, "consecutive"),
    ({"labels": {"background": 0, "organ": "one"}}, "expected an integer"),
    ({"file_ending": ".dcm"}, "is not read by medseg"),
    ({"channel_names": {"1": "CT"}}, "indices must be 0"),
    ({"numTraining": -1}, "numTraining"),
    ({"channel_names": None}, "needs 'channel_names'"),
])
def test_keys_that_change_the_task_are_refused(ds, change, words):
    _edit_json(ds, **change)
    with pytest.raises(DataError) as exc:
        read_description(ds)
    assert str(exc.value).startswith(str(ds / "dataset.json")) and words in str(exc.value)
    assert "\n" not in str(exc.value)


def test_unused_keys_are_ignored_with_a_note(ds):
    _edit_json(ds, overwrite_image_reader_writer="SimpleITKIO", my_key=1, description="x")
    d = read_description(ds)
    assert len(d.notes) == 2 and all(n.startswith(str(ds / "dataset.json")) for n in d.notes)
    assert "'my_key' ignored" in d.notes[0] and "overwrite_image_reader_writer" in d.notes[1]


def test_builtin_descriptions():
    assert builtin_description("pancreas").labels == {"background": 0, "pancreas": 1}
    assert builtin_description("pancreas", merge_tumour=False).foreground == [("pancreas", 1), ("tumour", 2)]
    assert builtin_description("bagls", 3).channels == ("R", "G", "B")
    assert describe_dataset({"dataset": "bagls", "channels": 1}).num_classes == 2


# ----------------------------------------------------------------------------- reading
def test_channels_are_stacked_in_order_and_cases_reoriented(ds):
    d = read_description(ds)
    cases = discover_nnunet(ds, d)
    assert [c.case_id for c in cases] == ["case_000", "case_001", "case_002", "case_003"]
    for i, c in enumerate(cases):
        image, label = sphere_case(i)
        case = load_nnunet_case(c, d)
        # case_001 and case_003 are stored RAS: read back in LPS, as written
        np.testing.assert_array_equal(case.image, image.astype(np.float32))
        np.testing.assert_array_equal(case.label, label)
        assert case.geometry.direction == pytest.approx((1, 0, 0, 0, 1, 0, 0, 0, 1))
    stored = sitk.ReadImage(str(cases[1].channels[0]))
    assert stored.GetDirection()[0] == pytest.approx(-1.0)  # really stored in another orientation
    assert load_nnunet_case(cases[1], d).source_geometry.direction[0] == pytest.approx(-1.0)


def test_imagesTs_cases_have_no_label(ds):
    (test,) = discover_nnunet(ds, folder="imagesTs")
    assert test.case_id == "case_004" and test.label is None and len(test.channels) == 2


def test_png_dataset_reads_rgb_as_three_channels(tmp_path):
    root = write_nnunet_png(tmp_path / "Dataset002_Frames")
    d = read_description(root)
    assert d.is_2d and d.channels == ("R", "G", "B")
    case = load_nnunet_case(discover_nnunet(root, d)[0], d)
    assert case.image.shape == (3, 1, 20, 30) and case.label.shape == (1, 20, 30)
    assert set(np.unique(case.label)) == {0, 1, 2}
    gray = write_nnunet_png(tmp_path / "Dataset003_Gray", rgb=False)
    case = load_nnunet_case(discover_nnunet(gray)[0], read_description(gray))
    assert case.image.shape == (1, 1, 20, 30)


def _rewrite(path: Path, array=None, **geometry) -> None:
    img = sitk.ReadImage(str(path))
    if array is not None:
        new = sitk.GetImageFromArray(array)
        new.CopyInformation(img)
        img = new
    for k, v in geometry.items():
        getattr(img, f"Set{k}")(v)
    sitk.WriteImage(img, str(path))


def test_label_outside_dataset_json_is_named(ds):
    label_path = ds / "labelsTr" / "case_000.nii.gz"
    arr = sitk.GetArrayFromImage(sitk.ReadImage(str(label_path)))
    arr[0, 0, 0] = 7
    _rewrite(label_path, arr)
    d = read_description(ds)
    with pytest.raises(DataError, match=r"label values \[7\] are not in dataset.json's labels"):
        load_nnunet_case(discover_nnunet(ds, d)[0], d)


# ----------------------------------------------------------------------------- the check
def test_check_ok(ds):
    report = check_dataset("nnunet", ds)
    assert report.ok and report.summary() == "OK: 5 cases"


def test_check_lists_every_problem_naming_the_file(ds):
    (ds / "imagesTr" / "case_001_0001.nii.gz").unlink()                       # a missing channel
    (ds / "labelsTr" / "case_002.nii.gz").unlink()                            # a missing label
    label0 = ds / "labelsTr" / "case_000.nii.gz"
    arr = sitk.GetArrayFromImage(sitk.ReadImage(str(label0)))
    arr[1, 1, 1] = 9
    _rewrite(label0, arr, Spacing=(0.9, 0.8, 2.5))                              # value + geometry
    ch = ds / "imagesTr" / "case_003_0000.nii.gz"
    img = sitk.GetArrayFromImage(sitk.ReadImage(str(ch))).astype(np.float32)
    img[2, 2, 2] = np.nan
    _rewrite(ch, img)                                                          # NaN
    report = check_dataset("nnunet", ds)
    lines = list(report)
    assert any(l.startswith(str(ds / "imagesTr" / "case_001_0001.nii.gz")) and "not found" in l for l in lines)
    assert any(l.startswith(str(ds / "labelsTr" / "case_002.nii.gz")) and "not found" in l for l in lines)
    assert any(l.startswith(str(label0)) and "[9]" in l for l in lines)
    assert any(l.startswith(str(label0)) and "grid differs" in l and "spacing" in l for l in lines)
    assert any(l.startswith(str(ch)) and "NaN" in l for l in lines)
    assert report.summary() == "FAILED: 4 of 5 cases"


def test_check_numtraining_and_origin_and_orientation(ds):
    _edit_json(ds, numTraining=7)
    _rewrite(ds / "imagesTr" / "case_000_0001.nii.gz", Origin=(0.0, 0.0, 0.0))
    a = np.radians(30)
    for f in ("imagesTr/case_002_0000.nii.gz", "imagesTr/case_002_0001.nii.gz", "labelsTr/case_002.nii.gz"):
        _rewrite(ds / f, Direction=(np.cos(a), -np.sin(a), 0, np.sin(a), np.cos(a), 0, 0, 0, 1))
    lines = list(check_dataset("nnunet", ds))
    assert any("numTraining is 7, imagesTr holds 4" in l for l in lines)
    assert any(l.startswith(str(ds / "imagesTr" / "case_000_0001.nii.gz")) and "origin" in l for l in lines)
    assert any("oblique orientation" in l for l in lines)


def test_check_cli(ds, tmp_path):
    from medseg.cli import main

    assert main(["data", "check", "nnunet", str(ds)]) == 0
    shutil.rmtree(ds / "labelsTr")
    assert main(["data", "check", "nnunet", str(ds)]) == 1


# ----------------------------------------------------------------------------- plan
def test_fingerprint_and_plan(ds, tmp_path):
    d = read_description(ds)
    cases = [load_nnunet_case(c, d) for c in discover_nnunet(ds, d)]
    fp = fingerprint(cases, d)
    labels = np.concatenate([c.label.ravel() for c in cases])
    assert fp["label_shares"]["organ2"] == pytest.approx(np.mean(labels == 2))
    fg0 = np.concatenate([c.image[0][c.label > 0] for c in cases])
    st = fp["foreground_intensities"]["0"]
    assert st["mean"] == pytest.approx(fg0.mean()) and st["percentile_99_5"] == pytest.approx(np.percentile(fg0, 99.5))
    plan = make_plan(fp, [32, 32])
    assert plan["slice_axis"] == "z" and plan["normalisation"][0]["scheme"] == "ct"
    x = normalise(cases[0].image, plan)
    lo, hi = plan["normalisation"][0]["clip"]
    expected = (np.clip(cases[0].image[0], lo, hi) - st["mean"]) / st["std"]
    np.testing.assert_allclose(x[0], expected, rtol=1e-5, atol=1e-5)


def test_other_channels_are_z_scored_per_image(ds):
    _edit_json(ds, channel_names={"0": "T2", "1": "ADC"})
    d = read_description(ds)
    cases = [load_nnunet_case(c, d) for c in discover_nnunet(ds, d)]
    plan = make_plan(fingerprint(cases, d), [32, 32])
    assert [n["scheme"] for n in plan["normalisation"]] == ["zscore", "zscore"] and d.modality == "MR"
    x = normalise(cases[0].image, plan)
    assert abs(float(x[1].mean())) < 1e-4 and float(x[1].std()) == pytest.approx(1.0, abs=1e-4)


def test_slice_axis_is_the_coarsest_and_round_trips():
    fp = {"spacings": [[1.0, 1.0, 4.0]] * 3, "dataset": {"labels": {}, "channels": []},
          "foreground_intensities": {}}
    assert make_plan(fp, [8, 8])["slice_axis"] == "x"
    arr = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    for axis in ("z", "y", "x"):
        s = to_slices(arr, axis)
        assert s.shape[1] == arr.shape[1 + "zyx".index(axis)]
        np.testing.assert_array_equal(from_slices(s, axis), arr)
    assert slice_spacing((3.0, 2.0, 1.0), "x") == (1.0, 3.0, 2.0)


def test_plan_files_are_reused_until_a_case_changes(ds, tmp_path):
    fp1, plan1 = plan_dataset(ds, [32, 32], tmp_path / "plan")
    stamp = (tmp_path / "plan" / "fingerprint.json").stat().st_mtime_ns
    fp2, _ = plan_dataset(ds, [32, 32], tmp_path / "plan")
    assert fp2 == fp1 and (tmp_path / "plan" / "fingerprint.json").stat().st_mtime_ns == stamp
    _rewrite(ds / "imagesTr" / "case_000_0000.nii.gz", sphere_case(0)[0][0] + 50)
    fp3, plan3 = plan_dataset(ds, [32, 32], tmp_path / "plan")
    assert fp3["source"] != fp1["source"] and plan3["normalisation"] != plan1["normalisation"]
    assert json.loads((tmp_path / "plan" / "plan.json").read_text()) == plan3
    assert not any(p.name.endswith(".json") for p in ds.iterdir() if p.name != "dataset.json")


def test_plan_is_never_written_into_a_foreign_folder(ds, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "fingerprint.json").write_text("user's")
    with pytest.raises(DataError, match="was not made by 'medseg data plan'"):
        plan_dataset(ds, [32, 32], tmp_path / "mine")
    assert (tmp_path / "mine" / "fingerprint.json").read_text() == "user's"
    with pytest.raises(DataError, match="is the dataset folder"):
        plan_dataset(ds, [32, 32], ds)
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        plan_dataset(ds, [32, 32], tmp_path / "file")


def test_plan_cli_prints_the_plan_and_refuses_bad_roots(ds, tmp_path, capsys):
    from medseg.cli import main

    assert main(["data", "plan", str(ds), "--out", str(tmp_path / "p"), "--size", "32", "32"]) == 0
    out = capsys.readouterr().out
    assert "4 cases, 2 channel(s)" in out and "slice axis z" in out and "organ3 3" in out
    assert json.loads((tmp_path / "p" / "plan.json").read_text())["size"] == [32, 32]
    assert main(["data", "plan", str(tmp_path / "nowhere"), "--out", str(tmp_path / "q")]) != 0
    err = capsys.readouterr().err
    assert "dataset.json not found" in err and "Traceback" not in err


@pytest.mark.slow  # builds datasets on disk
def test_builtin_datasets_use_the_plan_only_when_asked(tmp_path):
    """Pancreas-CT and BAGLS keep their window / [0, 1] scaling (cache key unchanged) unless
    data.normalisation: plan; then the cache holds plan-normalised slices."""
    from medseg.config import load_config
    from medseg.data import load_pancreas_case, synth_bagls, synth_pancreas
    from medseg.data.cache import SliceCache
    from medseg.data.discovery import discover_pancreas
    from medseg.data.plan import dataset_plan

    configs = Path(__file__).resolve().parents[2] / "configs" / "cpu"
    root = synth_pancreas(tmp_path / "p", cases=3, size=32, slices=8, seed=0)
    base = [f"data.root={root}", f"data.cache_dir={tmp_path / 'cache'}", "data.size=[32,32]"]
    window = load_config(configs / "pancreas_unet.yaml", base)["data"]
    planned = load_config(configs / "pancreas_unet.yaml", [*base, "data.normalisation=plan"])["data"]
    assert "plan" not in SliceCache(window).settings and "window" in SliceCache(window).settings
    cache = SliceCache(planned)
    plan = cache.settings["plan"]
    assert plan["normalisation"][0]["scheme"] == "ct" and plan["labels"] == {"background": 0, "pancreas": 1}
    ref = discover_pancreas(root)[0]
    cache.build(ref.case_id, ref.image, ref.label, "fp")
    entry = cache.load(ref.case_id)
    hu = load_pancreas_case(ref.image, ref.label).image
    lo, hi = plan["normalisation"][0]["clip"]
    expected = (np.clip(hu, lo, hi) - plan["normalisation"][0]["mean"]) / plan["normalisation"][0]["std"]
    np.testing.assert_allclose(entry["image"][:, 0].astype(np.float32), expected, atol=0.02, rtol=0.01)
    frames = synth_bagls(tmp_path / "b", frames=6, test_frames=2, seed=0)
    bagls = load_config(configs / "bagls_unet.yaml", [f"data.root={frames}", f"data.cache_dir={tmp_path / 'cache'}",
                                                      "data.normalisation=plan"])["data"]
    assert dataset_plan(bagls)["normalisation"] == [{"channel": "gray", "scheme": "zscore"}]
