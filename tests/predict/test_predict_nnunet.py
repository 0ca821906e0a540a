"""`medseg predict` with checkpoints of nnU-Net raw datasets (issue 17): nnU-Net's input
convention ({case}_{XXXX}{ending} channel files), label maps with the dataset's values in each
input's own geometry, one probability map per class, uncertainty over all classes, the plan's
normalisation and slice axis exactly as training. Tiny untrained checkpoints (conftest.py) on
hand-written datasets (tests/data/nnunet_helpers.py); nothing is trained here."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from medseg.cli import main
from medseg.errors import DataError, MedsegError
from medseg.predict import Predictor, predict

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from nnunet_helpers import write_nnunet, write_nnunet_png  # noqa: E402

LABELS = {0, 1, 2, 3}


@pytest.fixture(scope="module")
def nn_root(tmp_path_factory) -> Path:
    """4 training cases (every second one stored RAS), 2 test cases, 3 labels, 2 CT channels."""
    return write_nnunet(tmp_path_factory.mktemp("nn") / "Dataset001_Tiny", cases=4, labels=3,
                        channels=("CT", "CT"), ras_every=2, test_cases=2)


@pytest.fixture(scope="module")
def nn_ckpt(nn_root, tmp_path_factory, make_ckpt) -> Path:
    d = tmp_path_factory.mktemp("nn_ckpt")
    return make_ckpt(d / "nn.ckpt", "nnunet", root=nn_root, cache_dir=d / "cache")


def _read(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _to_lps(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.DICOMOrient(sitk.ReadImage(str(path)), "LPS"))


def _same_grid(a: Path, b: Path) -> None:
    x, y = sitk.ReadImage(str(a)), sitk.ReadImage(str(b))
    assert x.GetSize() == y.GetSize()
    np.testing.assert_allclose(x.GetOrigin(), y.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(x.GetSpacing(), y.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(x.GetDirection(), y.GetDirection(), atol=1e-6)


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --------------------------------------------------------------------------- outputs


def test_a_folder_in_nnunet_convention_gives_label_maps_named_as_nnunet(nn_ckpt, nn_root, tmp_path):
    out = tmp_path / "out"
    report = predict(nn_ckpt, [nn_root / "imagesTs"], out, device="cpu", progress=False)
    assert _listing(out) == ["case_004.nii.gz", "case_005.nii.gz"]
    assert [c.name for c in report.cases] == ["case_004", "case_005"]
    for case in ("case_004", "case_005"):
        written = sitk.ReadImage(str(out / f"{case}.nii.gz"))
        assert written.GetPixelID() == sitk.sitkUInt8
        _same_grid(out / f"{case}.nii.gz", nn_root / "imagesTs" / f"{case}_0000.nii.gz")
        values = set(np.unique(sitk.GetArrayFromImage(written)).tolist())
        assert values <= LABELS and len(values - {0}) >= 2, values  # several labels, their values
    assert all(set(c.labels) == {"organ1", "organ2", "organ3"} for c in report.cases)


def test_channel_files_given_directly_are_grouped_by_case(nn_ckpt, nn_root, tmp_path):
    files = sorted((nn_root / "imagesTs").glob("*.nii.gz"))[::-1]  # any order
    predict(nn_ckpt, files, tmp_path / "a", device="cpu", progress=False)
    predict(nn_ckpt, [nn_root / "imagesTs"], tmp_path / "b", device="cpu", progress=False)
    assert _listing(tmp_path / "a") == _listing(tmp_path / "b")
    for name in _listing(tmp_path / "a"):
        np.testing.assert_array_equal(_read(tmp_path / "a" / name), _read(tmp_path / "b" / name))


def test_a_case_stored_ras_gives_the_lps_label_map(nn_ckpt, nn_root, tmp_path):
    """The same case stored LPS, RAS and with permuted axes: one label map, voxel for voxel."""
    src = tmp_path / "in"
    src.mkdir()
    for code in ("LPS", "RAS", "PLS"):
        for c in (0, 1):
            img = sitk.ReadImage(str(nn_root / "imagesTs" / f"case_004_{c:04d}.nii.gz"))
            sitk.WriteImage(sitk.DICOMOrient(img, code), str(src / f"scan{code}_{c:04d}.nii.gz"))
    out = tmp_path / "out"
    predict(nn_ckpt, [src], out, save_probabilities=True, device="cpu", progress=False)
    reference = _to_lps(out / "scanLPS.nii.gz")
    assert len(np.unique(reference)) > 2
    for code in ("RAS", "PLS"):
        _same_grid(out / f"scan{code}.nii.gz", src / f"scan{code}_0000.nii.gz")  # its own geometry …
        np.testing.assert_array_equal(_to_lps(out / f"scan{code}.nii.gz"), reference, err_msg=code)  # … same labels
        for label in ("background", "organ2"):
            np.testing.assert_allclose(_to_lps(out / f"scan{code}_prob_{label}.nii.gz"),
                                       _to_lps(out / f"scanLPS_prob_{label}.nii.gz"), atol=1e-6)
    assert not np.array_equal(_read(out / "scanRAS.nii.gz"), _read(out / "scanLPS.nii.gz"))


def test_predict_normalises_and_slices_exactly_as_training(nn_ckpt, nn_root):
    """A training case (one stored LPS, one RAS): predict's mask = the evaluation's mask
    computed from the slice cache entry training builds."""
    import torch

    from medseg.data.cache import SliceCache
    from medseg.data.nnunet import discover_nnunet, read_channels, read_description
    from medseg.data.orientation import reorientation
    from medseg.data.plan import to_slices
    from medseg.data.preprocess import predict_slices
    from medseg.training.checkpoint import build_model_from_checkpoint, load_checkpoint

    meta = load_checkpoint(nn_ckpt)["medseg"]
    cache = SliceCache(meta["config"]["data"])
    model, _ = build_model_from_checkpoint(nn_ckpt)
    predictor = Predictor(nn_ckpt, device="cpu")
    description = read_description(nn_root)
    axis = meta["preprocessing"]["plan"]["slice_axis"]
    for case in discover_nnunet(nn_root, description)[:2]:  # case_000 LPS, case_001 RAS
        cache.build(case.case_id, case.channels[0], case.label, "test", [str(c) for c in case.channels])
        entry = cache.load(case.case_id)
        evaluated = predict_slices(model, torch.from_numpy(entry["image"].astype(np.float32)),
                                   entry["native_label"].shape[-2:]).numpy()
        image, geometry = read_channels(case.channels, description)
        mask = predictor.predict_volume(image, geometry).mask
        in_training_orientation = reorientation(geometry).apply(mask)
        np.testing.assert_array_equal(to_slices(in_training_orientation, axis), evaluated,
                                      err_msg=case.case_id)


def test_probabilities_per_class_and_uncertainty_over_all_classes(nn_ckpt, nn_root, tmp_path):
    out = tmp_path / "out"
    predict(nn_ckpt, [nn_root / "imagesTs"], out, save_probabilities=True, uncertainty=True,
            tta=True, device="cpu", progress=False)
    names = ["background", "organ1", "organ2", "organ3"]
    assert _listing(out) == sorted(["case_004.nii.gz", "case_005.nii.gz"] + [
        f"{c}_{k}.nii.gz" for c in ("case_004", "case_005")
        for k in [f"prob_{n}" for n in names] + ["uncertainty", "variance"]])
    for case in ("case_004", "case_005"):
        probs = np.stack([_read(out / f"{case}_prob_{n}.nii.gz") for n in names])
        assert probs.dtype == np.float32
        np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-5)  # every voxel
        labels = _read(out / f"{case}.nii.gz")
        np.testing.assert_array_equal(np.take_along_axis(probs, labels[None].astype(np.int64), 0)[0],
                                      probs.max(axis=0))  # the label map is their arg-max
        entropy = -(probs * np.log(np.clip(probs, 1e-30, None))).sum(axis=0)
        np.testing.assert_allclose(_read(out / f"{case}_uncertainty.nii.gz"), entropy, atol=1e-4)
        variance = _read(out / f"{case}_variance.nii.gz")
        assert variance.min() >= 0 and variance.max() <= 0.25 + 1e-6 and variance.max() > 0
        _same_grid(out / f"{case}_prob_organ1.nii.gz", nn_root / "imagesTs" / f"{case}_0000.nii.gz")


def test_variance_is_that_of_the_predicted_class(nn_ckpt, nn_root):
    """Several labels: variance over the passes of the probability of the arg-max class."""
    from medseg.data.nnunet import read_channels, read_description

    files = sorted((nn_root / "imagesTs").glob("case_004_*.nii.gz"))
    image, geometry = read_channels(files, read_description(nn_root))
    tta = Predictor(nn_ckpt, device="cpu", tta=True).predict_volume(image, geometry, classes=True)
    passes = []
    for flip in (False, True):  # the two passes by hand: identity and the x mirror
        p = Predictor(nn_ckpt, device="cpu")
        if flip:
            p._passes = _mirrored(p)
        passes.append(p.predict_volume(image, geometry, classes=True).probabilities)
    passes = np.stack(passes)
    np.testing.assert_allclose(passes.mean(axis=0), tta.probabilities, atol=1e-6)
    picked = np.take_along_axis(passes, tta.mask[None, None].astype(np.int64), 1)[:, 0]
    np.testing.assert_allclose(tta.variance, picked.var(axis=0), atol=1e-6)


def _mirrored(predictor):
    import torch

    def passes(x):
        member = predictor.members[0]
        logits = member.model(x.flip(-1))
        yield torch.softmax(logits.float(), dim=1).flip(-1)
    return passes


# --------------------------------------------------------------------------- refusals


def _one_line_error(capsys, *args) -> str:
    rc = main(["predict", "--no-progress", "--device", "cpu", *map(str, args)])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and len(err.splitlines()) == 1, err
    return err


def test_a_case_missing_a_channel_is_refused_before_anything_is_written(nn_ckpt, nn_root, tmp_path,
                                                                        capsys):
    folder = tmp_path / "in"
    shutil.copytree(nn_root / "imagesTs", folder)
    (folder / "case_005_0001.nii.gz").unlink()
    out = tmp_path / "out"
    with pytest.raises(DataError) as exc:
        predict(nn_ckpt, [folder], out, device="cpu", progress=False)
    assert str(exc.value).startswith(f"{folder / 'case_005_0001.nii.gz'}: channel 1 (CT) of case "
                                     "'case_005' not found")
    assert not out.exists()
    err = _one_line_error(capsys, "--checkpoint", nn_ckpt, "--output", out, folder)
    assert "case_005_0001.nii.gz" in err and not out.exists()
    # given directly, the same
    err = _one_line_error(capsys, "--checkpoint", nn_ckpt, "--output", out,
                          folder / "case_004_0000.nii.gz", folder / "case_005_0000.nii.gz",
                          folder / "case_004_0001.nii.gz")
    assert "case_005_0001.nii.gz: channel 1" in err and not out.exists()


def test_other_refusals_name_the_file(nn_ckpt, nn_root, tmp_path, capsys):
    out = tmp_path / "out"
    # a channel on another grid
    folder = tmp_path / "grid"
    shutil.copytree(nn_root / "imagesTs", folder)
    img = sitk.ReadImage(str(folder / "case_004_0001.nii.gz"))
    img.SetSpacing((0.8, 0.8, 3.0))
    sitk.WriteImage(img, str(folder / "case_004_0001.nii.gz"))
    err = _one_line_error(capsys, "--checkpoint", nn_ckpt, "--output", out, folder)
    assert f"{folder / 'case_004_0001.nii.gz'}: channel grid differs" in err
    # a file in a folder not named {case}_{XXXX}{ending}
    folder = tmp_path / "named"
    shutil.copytree(nn_root / "imagesTs", folder)
    shutil.copy(folder / "case_004_0000.nii.gz", folder / "case_004.nii.gz")
    err = _one_line_error(capsys, "--checkpoint", nn_ckpt, "--output", out, folder)
    assert f"{folder / 'case_004.nii.gz'}: not named {{case}}_{{XXXX}}.nii.gz" in err
    # a channel beyond the checkpoint's
    folder = tmp_path / "extra"
    shutil.copytree(nn_root / "imagesTs", folder)
    shutil.copy(folder / "case_004_0000.nii.gz", folder / "case_004_0002.nii.gz")
    err = _one_line_error(capsys, "--checkpoint", nn_ckpt, "--output", out, folder)
    assert "case_004_0002.nii.gz: channel 2 of case 'case_004'" in err
    # one file given directly is one case: it must hold every channel
    err = _one_line_error(capsys, "--checkpoint", nn_ckpt, "--output", out,
                          nn_root / "labelsTr" / "case_000.nii.gz")
    assert "holds 1 channel(s), but the checkpoint takes 2 channel(s) (CT, CT)" in err
    assert not out.exists()
    # a DICOM SEG needs DICOM sources
    err = _one_line_error(capsys, "--checkpoint", nn_ckpt, "--output", out, "--format", "both",
                          nn_root / "imagesTs")
    assert "DICOM" in err and not out.exists()


def test_nnunet_output_file_naming(nn_ckpt, nn_root, tmp_path):
    """One case: --output may name the label map (.nii.gz, .nrrd, .mha); inputs in .nrrd give .nrrd."""
    files = sorted((nn_root / "imagesTs").glob("case_004_*.nii.gz"))
    predict(nn_ckpt, files, tmp_path / "one" / "x.nrrd", save_probabilities=True, device="cpu",
            progress=False)
    assert _listing(tmp_path / "one") == sorted(["x.nrrd"] + [f"x_prob_{n}.nii.gz" for n in
                                                 ("background", "organ1", "organ2", "organ3")])
    folder = tmp_path / "nrrd"
    folder.mkdir()
    for f in files:
        sitk.WriteImage(sitk.ReadImage(str(f)), str(folder / f.name.replace(".nii.gz", ".nrrd")))
    predict(nn_ckpt, [folder], tmp_path / "out", device="cpu", progress=False)
    assert _listing(tmp_path / "out") == ["case_004.nrrd"]
    np.testing.assert_array_equal(_read(tmp_path / "out" / "case_004.nrrd"), _read(tmp_path / "one" / "x.nrrd"))
    _same_grid(tmp_path / "out" / "case_004.nrrd", files[0])


# --------------------------------------------------------------------------- 2D frames


@pytest.fixture(scope="module")
def png_root(tmp_path_factory) -> Path:
    return write_nnunet_png(tmp_path_factory.mktemp("png") / "Dataset002_Frames", cases=3, rgb=True)


def test_png_dataset_gives_png_label_maps_with_values(png_root, tmp_path, make_ckpt):
    ckpt = make_ckpt(tmp_path / "png.ckpt", "nnunet", "data.num_cases=3", "data.split=[1,1,1]",
                                root=png_root, cache_dir=tmp_path / "cache")
    out = tmp_path / "out"
    report = predict(ckpt, [png_root / "imagesTr"], out, save_probabilities=True, uncertainty=True,
                     overlay=True, device="cpu", progress=False)
    assert report.cases[0].kind == "frame"
    from PIL import Image

    for case in ("f0", "f1", "f2"):
        with Image.open(out / f"{case}.png") as im:
            assert im.mode == "L" and im.size == (30, 20)
            values = set(np.unique(np.asarray(im)).tolist())
        assert values <= {0, 1, 2} and len(values) >= 2, values  # label values, not 0/255
        probs = np.stack([_read(out / f"{case}_prob_{n}.nii.gz") for n in ("background", "fold", "gap")])
        assert probs.shape == (3, 20, 30)  # 2D maps of the frame's size
        np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-5)
        assert (out / f"{case}_overlay.png").is_file()


# --------------------------------------------------------------------------- experiments


def test_experiment_method_on_an_nnunet_experiment(nn_ckpt, nn_root, tmp_path, capsys, make_ckpt):
    from medseg.experiments.results import COLUMNS, append_run

    exp = tmp_path / "exp"
    seeds = [nn_ckpt, make_ckpt(tmp_path / "s1.ckpt", "nnunet", "seed=1", root=nn_root,
                                           cache_dir=tmp_path / "cache")]
    for repeat, ckpt in enumerate(seeds):
        rel = f"runs/nnunet/unet/none/repeat{repeat}"
        (exp / rel / "checkpoints").mkdir(parents=True)
        shutil.copy(ckpt, exp / rel / "checkpoints" / "best.ckpt")
        row = {c: "0" for c in COLUMNS}
        row.update(dataset="nnunet", model="unet", regularizer="none", params="{}", repeat=repeat,
                   seed=repeat, case_id="case_000", dice=0.5, iou=0.3, run_dir=rel)
        append_run(exp / "results.csv", [row])
    out = tmp_path / "out"
    rc = main(["predict", "--no-progress", "--device", "cpu", "--experiment", str(exp), "--method",
               "none", "--output", str(out), str(nn_root / "imagesTs")])
    stdout = capsys.readouterr().out
    assert rc == 0 and "ensemble of 2 checkpoints" in stdout
    assert _listing(out) == ["case_004.nii.gz", "case_005.nii.gz"]


def test_members_of_other_datasets_are_refused_naming_the_plan(nn_ckpt, tmp_path, make_ckpt):
    other = write_nnunet(tmp_path / "Dataset003_Other", cases=4, labels=3, channels=("CT", "CT"),
                         spacing=(0.8, 0.8, 4.0))
    ckpt = make_ckpt(tmp_path / "other.ckpt", "nnunet", root=other, cache_dir=tmp_path / "c")
    with pytest.raises(MedsegError) as exc:
        Predictor([nn_ckpt, ckpt], device="cpu")
    message = str(exc.value)
    assert "plan.median_spacing" in message and "ensemble members must share" in message
    assert len(message) < 1200


# --------------------------------------------------------------------------- DICOM


@pytest.fixture(scope="module")
def organ_root(tmp_path_factory) -> Path:
    """A one-channel CT dataset whose labels medseg partly knows by SNOMED CT."""
    root = write_nnunet(tmp_path_factory.mktemp("organs") / "Dataset004_Organs", cases=4, labels=3,
                        channels=("CT",))
    meta = json.loads((root / "dataset.json").read_text())
    meta["labels"] = {"background": 0, "liver": 1, "kidney_left": 2, "my structure": 3}
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def test_a_one_channel_checkpoint_takes_a_dicom_series(organ_root, ct_series, tmp_path, make_ckpt):
    ckpt = make_ckpt(tmp_path / "organs.ckpt", "nnunet", root=organ_root,
                                cache_dir=tmp_path / "cache")
    out = tmp_path / "out"
    predict(ckpt, [ct_series], out, device="cpu", progress=False)
    assert _listing(out) == [f"{ct_series.resolve().name}.nii.gz"]
    assert set(np.unique(_read(out / f"{ct_series.resolve().name}.nii.gz")).tolist()) <= LABELS


def test_a_dicom_series_is_refused_by_a_two_channel_checkpoint(nn_ckpt, ct_series, tmp_path, capsys):
    err = _one_line_error(capsys, "--checkpoint", nn_ckpt, "--output", tmp_path / "o", ct_series)
    assert "one channel" in err and "takes 2 channel(s)" in err
    assert not (tmp_path / "o").exists()


def test_a_folder_in_the_decathlon_convention_holds_one_file_per_case(nn_ckpt, nn_root, tmp_path):
    """No file named {case}_{XXXX}: each is one case with every channel (a 4D file, as the
    Decathlon's imagesTs), predicted as its split channel files are."""
    folder = tmp_path / "imagesTs"
    folder.mkdir()
    channels = [sitk.ReadImage(str(nn_root / "imagesTs" / f"case_004_{c:04d}.nii.gz")) for c in (0, 1)]
    sitk.WriteImage(sitk.JoinSeries(channels), str(folder / "tiny_4.nii.gz"))
    predict(nn_ckpt, [folder], tmp_path / "a", device="cpu", progress=False)
    predict(nn_ckpt, sorted((nn_root / "imagesTs").glob("case_004_*")), tmp_path / "b", device="cpu",
            progress=False)
    assert _listing(tmp_path / "a") == ["tiny_4.nii.gz"]
    np.testing.assert_array_equal(_read(tmp_path / "a" / "tiny_4.nii.gz"), _read(tmp_path / "b" / "case_004.nii.gz"))
    _same_grid(tmp_path / "a" / "tiny_4.nii.gz", nn_root / "imagesTs" / "case_004_0000.nii.gz")


def test_a_recorded_training_ending_refuses_the_other_kind(nn_ckpt, nn_root, png_root, tmp_path, capsys):
    """Checkpoints that record their training files' ending (preprocessing.file_ending): a
    volume checkpoint refuses frames, a frame checkpoint volumes (else the input's ending decides)."""
    import torch

    ckpt = torch.load(nn_ckpt, weights_only=True)
    ckpt["medseg"]["preprocessing"]["file_ending"] = ".nii.gz"
    torch.save(ckpt, tmp_path / "ending.ckpt")
    frames = tmp_path / "frames"
    frames.mkdir()
    for c in (0, 1):
        shutil.copy(png_root / "imagesTr" / "f0_0000.png", frames / f"f0_{c:04d}.png")
    err = _one_line_error(capsys, "--checkpoint", tmp_path / "ending.ckpt", "--output", tmp_path / "o",
                          frames)
    assert "is a 2D frame, but checkpoint" in err and "3D volumes (.nii.gz files)" in err
    assert Predictor(tmp_path / "ending.ckpt", device="cpu").file_ending == ".nii.gz"
    assert Predictor(nn_ckpt, device="cpu").file_ending == ".nii.gz"  # recorded by training
    del ckpt["medseg"]["preprocessing"]["file_ending"]  # a checkpoint from before it was recorded
    ckpt["medseg"]["preprocessing"]["plan"].pop("file_ending", None)
    torch.save(ckpt, tmp_path / "old.ckpt")
    assert Predictor(tmp_path / "old.ckpt", device="cpu").file_ending is None


@pytest.mark.parametrize("dataset", ["pancreas", "bagls"])
def test_builtin_datasets_normalised_by_their_plan(dataset, pancreas_root, bagls_root, tmp_path, make_ckpt):
    """data.normalisation: plan on Pancreas-CT / BAGLS: the checkpoint carries the plan and
    predict normalises with it, as the slice cache does (mask = the evaluation's)."""
    import torch

    from medseg.data import read_ct_volume, read_frame_image
    from medseg.data.cache import SliceCache
    from medseg.data.discovery import discover_bagls, discover_pancreas
    from medseg.data.preprocess import predict_slices
    from medseg.training.checkpoint import build_model_from_checkpoint, load_checkpoint

    root = pancreas_root if dataset == "pancreas" else bagls_root
    ckpt = make_ckpt(tmp_path / "plan.ckpt", dataset, "data.normalisation=plan", f"data.root={root}",
                     f"data.cache_dir={tmp_path / 'cache'}")
    meta = load_checkpoint(ckpt)["medseg"]
    assert "plan" in meta["preprocessing"]
    cache = SliceCache(meta["config"]["data"])
    predictor = Predictor(ckpt, device="cpu")
    if dataset == "pancreas":
        ref = discover_pancreas(root)[0]
        hu, geometry = read_ct_volume(ref.image)
        mask = predictor.predict_ct(hu, geometry).mask
    else:
        ref = discover_bagls(root)["test"][0]
        mask = predictor.predict_frame(read_frame_image(ref.image)).mask[None]
    cache.build(ref.case_id, ref.image, getattr(ref, "label", None) or _bagls_mask(ref.image), "test")
    entry = cache.load(ref.case_id)
    model, _ = build_model_from_checkpoint(ckpt)
    evaluated = predict_slices(model, torch.from_numpy(entry["image"].astype(np.float32)),
                               entry["native_label"].shape[-2:]).numpy()
    np.testing.assert_array_equal(mask, evaluated)
    assert 0 < np.count_nonzero(mask) < mask.size
    # the command writes the binary outputs of its dataset
    report = predict(ckpt, [ref.image], tmp_path / "out", save_probabilities=True, device="cpu",
                     progress=False)
    ending = "_mask.nii.gz" if dataset == "pancreas" else "_mask.png"
    assert sorted(p.name for p in report.cases[0].files.values()) == \
        sorted([f"{report.cases[0].name}{ending}", f"{report.cases[0].name}_prob.nii.gz"])
    assert report.cases[0].foreground == np.count_nonzero(mask)


def _bagls_mask(image: Path) -> Path:
    from medseg.data.bagls import mask_path_for

    return mask_path_for(image)
