"""Hostile states of trained runs: damaged checkpoints and configs, --resume, --force,
evaluate with a foreign checkpoint, predict with damaged metadata. All train: slow."""

from __future__ import annotations

import json
import os

import pytest
import torch
import yaml

from hostile_helpers import resume_config, snapshot, tiny_run_config

pytestmark = pytest.mark.slow

OUTPUTS = ("metrics.json", "cases.csv")




def _outputs(run):
    return {n: (run / n).read_bytes() for n in OUTPUTS}


# ----------------------------------------------------------------------------- resume
@pytest.mark.parametrize("damage", ["truncated", "zero_bytes", "random_bytes"])
def test_resume_skips_a_damaged_last_checkpoint_and_says_which(cli, run_copy, tmp_path, damage):
    last = run_copy / "checkpoints" / "last.ckpt"
    raw = last.read_bytes()
    last.write_bytes({"truncated": raw[: len(raw) // 2], "zero_bytes": b"",
                      "random_bytes": os.urandom(4096)}[damage])
    r = cli("train", "--config", resume_config(run_copy, tmp_path, epochs=2), "--out", run_copy, "--resume",
            "--no-progress")
    assert r.rc == 0, r.err
    assert f"resuming from {run_copy / 'checkpoints' / 'best.ckpt'} (epoch 1 done)" in r.out
    assert f"skipped {last}: unreadable" in r.err and "Traceback" not in r.err
    assert torch.load(last, weights_only=True)["epoch"] == 1  # the second epoch ran and saved


@pytest.mark.parametrize("damage", ["truncated", "zero_bytes"])
def test_resume_with_no_complete_checkpoint_is_one_line(cli, run_copy, tmp_path, damage):
    for name in ("last.ckpt", "best.ckpt"):
        f = run_copy / "checkpoints" / name
        raw = f.read_bytes()
        f.write_bytes(raw[: len(raw) // 3] if damage == "truncated" else b"")
    before = snapshot(run_copy)
    r = cli("train", "--config", resume_config(run_copy, tmp_path, epochs=2), "--out", run_copy, "--resume",
            "--no-progress")
    r.one_error_line(str(run_copy / "checkpoints" / "last.ckpt"), "no complete checkpoint")
    assert snapshot(run_copy) == before


def test_resume_with_a_wrong_shape_checkpoint(cli, run_copy, tmp_path, tiny_pancreas):
    from medseg.training.module import SegmentationModule

    other = SegmentationModule(tiny_run_config(tiny_pancreas, tmp_path, model={"base_channels": 3}))
    for name in ("last.ckpt", "best.ckpt"):
        f = run_copy / "checkpoints" / name
        ckpt = torch.load(f, weights_only=True)
        ckpt["state_dict"] = other.state_dict()
        torch.save(ckpt, f)
    before = snapshot(run_copy)
    r = cli("train", "--config", resume_config(run_copy, tmp_path, epochs=2), "--out", run_copy, "--resume",
            "--no-progress")
    r.one_error_line(str(run_copy / "checkpoints"), "do not fit")
    assert snapshot(run_copy) == before


def test_resume_keeps_the_metrics_history(cli, run_copy, tmp_path):
    import csv

    log = run_copy / "logs" / "metrics.csv"
    # the finished run logged epoch 0 (train/val) and its test scores after it (epoch 1)
    old_rows = [r for r in csv.DictReader(open(log)) if r["epoch"] == "0"]
    assert old_rows
    r = cli("train", "--config", resume_config(run_copy, tmp_path, epochs=2), "--out", run_copy, "--resume",
            "--no-progress")
    assert r.rc == 0, r.err
    rows = list(csv.DictReader(open(log)))
    assert {r["epoch"] for r in rows} == {"0", "1", "2"}  # epoch 0 kept, epoch 1 trained, test after
    assert sum(1 for r in rows if r.get("test_dice")) == 1  # the old test row was replaced, not doubled
    kept = [{k: v for k, v in row.items() if k in old_rows[0]} for row in rows if row["epoch"] == "0"]
    assert [{k: (v or "") for k, v in row.items()} for row in kept] == old_rows


def test_resume_with_a_different_model_config_is_refused(cli, run_copy, tmp_path):
    cfg = resume_config(run_copy, tmp_path, epochs=2)
    before = snapshot(run_copy)
    r = cli("train", "--config", cfg, "--out", run_copy, "--resume", "--no-progress", "model.base_channels=3")
    r.one_error_line(str(run_copy / "config.yaml"), "'model'")
    assert snapshot(run_copy) == before


@pytest.mark.parametrize("damage", ["random_bytes", "list_valued", "missing", "duplicate_keys", "bad_value"])
def test_resume_with_a_damaged_run_config(cli, run_copy, tmp_path, damage):
    cfg = resume_config(run_copy, tmp_path, epochs=2)
    _damage_config(run_copy / "config.yaml", damage)
    before = snapshot(run_copy)
    r = cli("train", "--config", cfg, "--out", run_copy, "--resume", "--no-progress")
    r.one_error_line(str(run_copy))
    assert snapshot(run_copy) == before


def _damage_config(f, damage):
    text = f.read_text()
    if damage == "random_bytes":
        f.write_bytes(os.urandom(512) + b"\xff")
    elif damage == "list_valued":
        f.write_text("- 1\n- 2\n")
    elif damage == "missing":
        f.unlink()
    elif damage == "duplicate_keys":
        f.write_text(text + "seed: 3\n")
    elif damage == "bad_value":
        f.write_text(text.replace("epochs: 1", "epochs: many"))


# ----------------------------------------------------------------------------- evaluate
@pytest.mark.parametrize("damage", ["random_bytes", "list_valued", "missing", "duplicate_keys", "bad_value"])
def test_evaluate_with_a_damaged_run_config(cli, run_copy, damage):
    _damage_config(run_copy / "config.yaml", damage)
    before = _outputs(run_copy)
    r = cli("evaluate", run_copy, "--no-progress")
    r.one_error_line(str(run_copy))
    assert _outputs(run_copy) == before


def test_evaluate_refuses_a_checkpoint_of_another_dataset(cli, run_copy, tiny_bagls_run):
    foreign = tiny_bagls_run / "checkpoints" / "best.ckpt"
    before = _outputs(run_copy)
    r = cli("evaluate", run_copy, "--checkpoint", foreign, "--no-progress")
    r.one_error_line(str(foreign), "dataset is 'bagls'", "'pancreas'")
    assert _outputs(run_copy) == before


def test_evaluate_refuses_a_checkpoint_of_another_model(cli, run_copy, tmp_path, tiny_pancreas):
    from medseg.training.checkpoint import medseg_metadata
    from medseg.training.module import SegmentationModule

    cfg = tiny_run_config(tiny_pancreas, tmp_path, model={"base_channels": 3})
    ckpt = torch.load(run_copy / "checkpoints" / "best.ckpt", weights_only=True)
    ckpt["state_dict"], ckpt["medseg"] = SegmentationModule(cfg).state_dict(), medseg_metadata(cfg)
    other = tmp_path / "other.ckpt"
    torch.save(ckpt, other)
    before = _outputs(run_copy)
    r = cli("evaluate", run_copy, "--checkpoint", other, "--no-progress")
    r.one_error_line(str(other), "model.base_channels")
    assert _outputs(run_copy) == before


def test_evaluate_refuses_other_preprocessing(cli, run_copy, tmp_path):
    ckpt = torch.load(run_copy / "checkpoints" / "best.ckpt", weights_only=True)
    ckpt["medseg"]["preprocessing"]["window"] = [-1000.0, 1000.0]
    other = tmp_path / "window.ckpt"
    torch.save(ckpt, other)
    before = _outputs(run_copy)
    r = cli("evaluate", run_copy, "--checkpoint", other, "--no-progress")
    r.one_error_line(str(other), "preprocessing.window")
    assert _outputs(run_copy) == before


@pytest.mark.parametrize("damage", ["truncated", "zero_bytes", "not_torch"])
def test_evaluate_with_a_damaged_checkpoint(cli, run_copy, damage):
    best = run_copy / "checkpoints" / "best.ckpt"
    raw = best.read_bytes()
    best.write_bytes({"truncated": raw[:100], "zero_bytes": b"", "not_torch": b"PK\x03\x04 nope"}[damage])
    before = _outputs(run_copy)
    r = cli("evaluate", run_copy, "--no-progress")
    r.one_error_line(str(best))
    assert _outputs(run_copy) == before


def test_run_config_paths_are_absolute_and_relative_ones_resolve_against_the_run(cli, run_copy, tmp_path,
                                                                                  monkeypatch):
    cfg = yaml.safe_load((run_copy / "config.yaml").read_text())
    assert all(os.path.isabs(cfg["data"][k]) for k in ("root", "cache_dir"))
    for k in ("root", "cache_dir"):
        cfg["data"][k] = os.path.relpath(cfg["data"][k], run_copy)
    (run_copy / "config.yaml").write_text(yaml.safe_dump(cfg))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    r = cli("evaluate", run_copy, "--no-progress")
    assert r.rc == 0, r.err
    assert list(elsewhere.iterdir()) == []  # no data/cache left in the working folder
    assert json.loads((run_copy / "metrics.json").read_text())["checkpoint"] == "checkpoints/best.ckpt"


# ----------------------------------------------------------------------------- --force and failures
def _nan_label(root):
    import nibabel as nib
    import numpy as np

    for f in (root / "TCIA_pancreas_labels-02-05-2017").glob("*.nii.gz"):
        img = nib.load(str(f))
        data = np.asarray(img.dataobj).astype(np.float32)
        data[0, 0, 0] = np.nan
        nib.save(nib.Nifti1Image(data, img.affine), str(f))


def test_force_over_a_good_run_with_unreadable_data_keeps_the_old_run(cli, run_copy, pancreas_copy, tmp_path):
    _nan_label(pancreas_copy)
    cfg = resume_config(run_copy, tmp_path)
    before = snapshot(run_copy)
    r = cli("train", "--config", cfg, "--out", run_copy, "--force", "--no-progress",
            f"data.root={pancreas_copy}", f"data.cache_dir={tmp_path / 'cache2'}")
    r.one_error_line("NaN")
    assert snapshot(run_copy) == before
    assert not list(run_copy.parent.glob(".run.*"))  # no staging folder, no lock left


def test_a_failed_fresh_run_leaves_nothing_and_a_rerun_works(cli, pancreas_copy, tmp_path):
    import shutil as sh

    good = tmp_path / "good"
    sh.copytree(pancreas_copy, good)
    _nan_label(pancreas_copy)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({k: v for k, v in tiny_run_config(pancreas_copy, tmp_path / "cache").items()}))
    run = tmp_path / "run"
    r = cli("train", "--config", cfg, "--out", run, "--no-progress")
    r.one_error_line("NaN")
    assert not run.exists() and not list(tmp_path.glob(".run*"))
    r = cli("train", "--config", cfg, "--out", run, "--no-progress", f"data.root={good}")
    assert r.rc == 0, r.err
    assert (run / "metrics.json").is_file()


def test_force_over_a_real_run_replaces_it(cli, run_copy, tmp_path):
    cfg = resume_config(run_copy, tmp_path)
    old_last = (run_copy / "checkpoints" / "last.ckpt").read_bytes()
    (run_copy / "drops.csv").write_text("slot\n")  # written by `medseg drops`
    (run_copy / ".metrics.json.k3x9.tmp").write_text("{")  # an atomic write cut by a kill
    r = cli("train", "--config", cfg, "--out", run_copy, "--force", "--no-progress", "seed=5")
    assert r.rc == 0, r.err
    assert yaml.safe_load((run_copy / "config.yaml").read_text())["seed"] == 5
    assert (run_copy / "checkpoints" / "last.ckpt").read_bytes() != old_last
    assert not (run_copy / "drops.csv").exists()  # the old run was replaced as a whole
    assert not list(run_copy.parent.glob(".run.*"))


def test_run_files_follow_the_umask(tiny_run):
    import stat

    for p in [tiny_run, *tiny_run.rglob("*")]:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode & 0o044 == 0o044, (p, oct(mode))  # group/other can read (umask 022 in tests)


# ----------------------------------------------------------------------------- predict (via the CLI)
def _test_image(run):
    split = json.loads((run / "split.json").read_text())
    return split["cases"][split["test"][0]]["image"]


@pytest.mark.parametrize("drop", ["preprocessing", "model", "regularizer", "preprocessing.size",
                                  "preprocessing.window", "model.depth", "out_channels"])
def test_predict_with_incomplete_checkpoint_metadata(cli, tiny_run, tmp_path, drop):
    ckpt = torch.load(tiny_run / "checkpoints" / "best.ckpt", weights_only=True)
    section, _, key = drop.partition(".")
    if key:
        del ckpt["medseg"][section][key]
    else:
        del ckpt["medseg"][section]
    bad = tmp_path / "bad.ckpt"
    torch.save(ckpt, bad)
    out = tmp_path / "out"
    r = cli("predict", "--checkpoint", bad, "--output", out, "--no-progress", _test_image(tiny_run))
    r.one_error_line(str(bad), drop.split(".")[-1])
    assert not out.exists()


@pytest.mark.parametrize("damage", ["truncated", "zero_bytes", "missing"])
def test_predict_with_a_damaged_checkpoint(cli, tiny_run, tmp_path, damage):
    bad = tmp_path / "bad.ckpt"
    raw = (tiny_run / "checkpoints" / "best.ckpt").read_bytes()
    if damage != "missing":
        bad.write_bytes(raw[: len(raw) // 2] if damage == "truncated" else b"")
    out = tmp_path / "out"
    r = cli("predict", "--checkpoint", bad, "--output", out, "--no-progress", _test_image(tiny_run))
    r.one_error_line(str(bad))
    assert not out.exists()


def test_predict_does_not_overwrite_without_force(cli, tiny_run, tmp_path):
    out = tmp_path / "out"
    ckpt = tiny_run / "checkpoints" / "best.ckpt"
    image = _test_image(tiny_run)
    assert cli("predict", "--checkpoint", ckpt, "--output", out, "--no-progress", image).rc == 0
    before = snapshot(out)
    r = cli("predict", "--checkpoint", ckpt, "--output", out, "--no-progress", image)
    r.one_error_line("--force")
    assert snapshot(out) == before


def test_predict_ct_checkpoint_on_a_frame(cli, tiny_run, tiny_bagls, tmp_path):
    out = tmp_path / "out"
    frame = tiny_bagls / "test" / "0.png"
    r = cli("predict", "--checkpoint", tiny_run / "checkpoints" / "best.ckpt", "--output", out,
            "--no-progress", frame)
    r.one_error_line(str(frame))
    assert not out.exists()


@pytest.mark.parametrize("damage", ["random_bytes", "missing"])
def test_coadapt_with_a_damaged_run_config(cli, run_copy, tmp_path, damage):
    _damage_config(run_copy / "config.yaml", damage)
    r = cli("coadapt", run_copy, "--out", tmp_path / "co", "--no-progress", "--fractions", "0", "--draws", "1")
    r.one_error_line(str(run_copy))
    assert not (tmp_path / "co").exists()
