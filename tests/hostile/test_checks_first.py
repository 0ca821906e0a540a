"""Checks first (issue 20, mechanism 3): every check that can fail runs before any work and
before anything is written.

A refusal here must come before training: the tests that expect one are not marked slow,
so the suite's guard (``tests/conftest.py``: ``Trainer.fit`` raises outside a slow test)
fails them if training started. Each asserts one ``medseg: error:`` line naming the file
or key, and that nothing was created or changed (the folder's entries, or a snapshot).
"""

from __future__ import annotations

import json
import os

import pytest
import torch
import yaml

from hostile_helpers import resume_config, snapshot


def _entries(folder):
    """Every name below ``folder`` (files, folders, links; hidden ones too)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _run_files(run):
    return {"config.yaml", "split.json", "metrics.json", "cases.csv", "checkpoints"} <= set(os.listdir(run))


# ----------------------------------------------------------------------------- --out
@pytest.mark.slow
@pytest.mark.parametrize("how", ["link_to_empty_folder", "empty_folder"])
def test_train_out_an_empty_folder_or_a_link_to_one_takes_the_run(cli, config_file, tmp_path, how):
    """An empty folder (or a link to one) named as --out ends up holding the run; the link
    stays a link to it, and nothing else is left beside it (no staging folder, no backup)."""
    cfg = config_file()
    target = tmp_path / "runs" / "target"
    target.mkdir(parents=True)
    out = target
    if how == "link_to_empty_folder":
        out = tmp_path / "runs" / "link"
        out.symlink_to("target")
    r = cli("train", "--config", cfg, "--out", out, "--no-progress")
    assert r.rc == 0, r.err
    assert "Traceback" not in r.err
    assert _run_files(target)
    if how == "link_to_empty_folder":
        assert out.is_symlink() and os.readlink(out) == "target"
    assert sorted(os.listdir(tmp_path / "runs")) == sorted({"target", out.name})
    # and --resume through the same --out continues the same run
    r = cli("train", "--config", cfg, "--out", out, "--resume", "--no-progress")
    assert r.rc == 0, r.err
    assert f"resuming from {target / 'checkpoints'}" in r.out
    assert sorted(os.listdir(tmp_path / "runs")) == sorted({"target", out.name})


@pytest.mark.parametrize("resume", [False, True])
def test_train_out_a_dangling_link_is_refused_before_any_work(cli, config_file, tmp_path, resume):
    cfg = config_file()
    runs = tmp_path / "runs"
    runs.mkdir()
    link = runs / "run"
    link.symlink_to("nowhere")
    r = cli("train", "--config", cfg, "--out", link, "--no-progress", *(["--resume"] if resume else []))
    line = r.one_error_line(str(link), "nowhere")
    assert "does not exist" in line
    assert os.listdir(runs) == ["run"] and os.readlink(link) == "nowhere"
    assert not (runs / "nowhere").exists()


def test_train_out_a_link_to_a_file_is_refused_before_any_work(cli, config_file, tmp_path):
    cfg = config_file()
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    link = tmp_path / "run"
    link.symlink_to(notes)
    before = _entries(tmp_path)
    r = cli("train", "--config", cfg, "--out", link, "--no-progress")
    r.one_error_line("not a folder")
    assert _entries(tmp_path) == before and notes.read_text() == "my notes"


@pytest.mark.parametrize("depth", [1, 3])
def test_train_out_below_a_file_is_refused_before_any_work(cli, config_file, tmp_path, depth):
    cfg = config_file()
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    out = notes.joinpath(*["run"] * depth)
    before = _entries(tmp_path)
    r = cli("train", "--config", cfg, "--out", out, "--no-progress")
    r.one_error_line(str(notes), "not a folder")
    assert _entries(tmp_path) == before and notes.read_text() == "my notes"


def test_train_out_a_non_empty_user_folder_with_force_is_refused_before_training(cli, config_file, tmp_path):
    """--force over a folder medseg did not make: refused up front (it was refused only after
    training, when the finished run was to be renamed into place)."""
    cfg = config_file()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("chapter 1")
    before = snapshot(tmp_path)
    r = cli("train", "--config", cfg, "--out", mine, "--force", "--no-progress")
    r.one_error_line(str(mine), "not a medseg run folder")
    assert snapshot(tmp_path) == before
    assert _entries(tmp_path) == ["cfg.yaml", "mine", "mine/thesis.tex"]


# ----------------------------------------------------------------------------- splits
def _split_file(cli, config_file, tmp_path, **edit):
    out = tmp_path / "split.json"
    r = cli("data", "split", "--config", config_file(), "--out", out)
    assert r.rc == 0, r.err
    split = json.loads(out.read_text())
    for name, value in edit.items():
        split["unused"] = split.get("unused", []) + split[name]
        split[name] = value
    out.write_text(json.dumps(split))
    return out


@pytest.mark.parametrize("empty", ["test", "val"])
def test_train_with_a_split_without_test_or_validation_cases_is_refused_before_training(
        cli, config_file, tmp_path, empty):
    split = _split_file(cli, config_file, tmp_path, **{empty: []})
    cfg = config_file("run.yaml", data={"split_file": str(split)})
    before = _entries(tmp_path)
    r = cli("train", "--config", cfg, "--out", tmp_path / "run", "--no-progress")
    line = r.one_error_line("no test cases" if empty == "test" else "no validation cases")
    if empty == "test":
        assert str(split) in line
    assert _entries(tmp_path) == before  # no run folder, no staging folder, no lock


@pytest.mark.slow
@pytest.mark.parametrize("split", ["test", "val", "train"])
def test_evaluate_with_an_empty_split_keeps_the_metrics_files(cli, run_copy, split):
    """The files of the last evaluation stay as they were (they were emptied, then a KeyError)."""
    f = run_copy / "split.json"
    data = json.loads(f.read_text())
    data["unused"] = data["unused"] + data[split]
    data[split] = []
    f.write_text(json.dumps(data))
    before = snapshot(run_copy)
    r = cli("evaluate", run_copy, "--split", split, "--no-progress")
    line = r.one_error_line(str(f), f"'{split}' split has no cases")
    assert "nothing to evaluate" in line
    assert snapshot(run_copy) == before


# ----------------------------------------------------------------------------- --resume
def _pretend_trained(run, epochs):
    """Make the run's checkpoints say ``epochs`` epochs were trained."""
    for name in ("last.ckpt", "best.ckpt"):
        f = run / "checkpoints" / name
        ckpt = torch.load(f, weights_only=True)
        ckpt["epoch"] = epochs - 1
        torch.save(ckpt, f)




@pytest.mark.slow
@pytest.mark.parametrize("trained,asked", [(6, 5), (2, 1), (9, 3)])
def test_resume_with_fewer_epochs_than_trained_is_refused_up_front(cli, run_copy, tmp_path, trained, asked):
    """One line naming train.epochs; the run (its log and its test row included) unchanged."""
    _pretend_trained(run_copy, trained)
    log = run_copy / "logs" / "metrics.csv"
    assert "test_dice" in log.read_text()
    before = snapshot(run_copy)
    r = cli("train", "--config", resume_config(run_copy, tmp_path, epochs=asked), "--out", run_copy, "--resume",
            "--no-progress")
    line = r.one_error_line("train.epochs", f"{trained} epochs")
    assert f"train.epochs >= {trained}" in line
    assert snapshot(run_copy) == before


# ----------------------------------------------------------------------------- Lightning's refusals
def _no_gpu():
    return not torch.cuda.is_available()


def _no_mps():
    return not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


@pytest.mark.parametrize("overrides,key", [
    pytest.param(["train.accelerator=gpu"], "train.accelerator",
                 marks=pytest.mark.skipif(not _no_gpu(), reason="a GPU is present")),
    pytest.param(["train.accelerator=cuda"], "train.accelerator",
                 marks=pytest.mark.skipif(not _no_gpu(), reason="a GPU is present")),
    pytest.param(["train.accelerator=mps"], "train.accelerator",
                 marks=pytest.mark.skipif(not _no_mps(), reason="MPS is present")),
    (["train.accelerator=cpu", "train.devices=[0,1]"], "train.devices"),
    (["train.accelerator=cpu", "train.devices=100000"], "train.devices"),
])
def test_trainer_settings_lightning_refuses_are_one_line_before_any_work(cli, config_file, tmp_path,
                                                                        overrides, key):
    cfg = config_file()
    before = _entries(tmp_path)
    r = cli("train", "--config", cfg, "--out", tmp_path / "run", "--no-progress", *overrides)
    r.one_error_line(key)
    assert _entries(tmp_path) == before
