"""Destructive flags: ``--force`` removes only what medseg made, and nothing is overwritten
without it. Every refusal happens before anything is touched (checked by snapshots)."""

from __future__ import annotations

import json
import os

import pytest

from hostile_helpers import snapshot


@pytest.fixture
def user_folder(tmp_path):
    """A folder of the user's own files (no medseg marker)."""
    f = tmp_path / "mine"
    f.mkdir()
    (f / "thesis.tex").write_text("years of work")
    (f / "data").mkdir()
    (f / "data" / "scan.nii.gz").write_bytes(b"\x1f\x8b precious")
    return f


def _fake_run(folder, extra=None):
    """A medseg run folder's shape (marker + the usual entries), optionally with a stranger."""
    from medseg.io import mark_folder

    folder.mkdir(parents=True)
    mark_folder(folder, "run")
    (folder / "config.yaml").write_text("seed: 0\n")
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    if extra:
        (folder / extra).write_text("the user's notes")
    return folder


def test_train_force_into_cwd_with_files_is_refused(cli, config_file, user_folder, monkeypatch):
    cfg = config_file()
    monkeypatch.chdir(user_folder)
    before = snapshot(user_folder)
    r = cli("train", "--config", cfg, "--out", ".", "--force", "--no-progress")
    r.one_error_line("current folder")
    assert snapshot(user_folder) == before


@pytest.mark.parametrize("depth", [1, 2])
def test_train_force_onto_a_parent_of_cwd_is_refused(cli, config_file, tmp_path, monkeypatch, depth):
    run = _fake_run(tmp_path / "run")
    inner = run / "checkpoints"
    if depth == 2:
        inner = inner / "deeper"
        inner.mkdir()
    monkeypatch.chdir(inner)
    before = snapshot(run)
    r = cli("train", "--config", config_file(), "--out", run, "--force", "--no-progress")
    r.one_error_line(str(run), "current folder")
    assert snapshot(run) == before


def test_train_force_over_a_user_folder_is_refused(cli, config_file, user_folder):
    before = snapshot(user_folder)
    r = cli("train", "--config", config_file(), "--out", user_folder, "--force", "--no-progress")
    r.one_error_line(str(user_folder), "not a medseg run folder")
    assert snapshot(user_folder) == before


@pytest.mark.parametrize("kind", ["experiment", "synth", "cache"])
def test_train_force_over_another_medseg_folder_is_refused(cli, config_file, tmp_path, kind):
    from medseg.io import mark_folder

    f = tmp_path / "other"
    f.mkdir()
    mark_folder(f, kind)
    (f / "results.csv").write_text("x")
    before = snapshot(f)
    r = cli("train", "--config", config_file(), "--out", f, "--force", "--no-progress")
    r.one_error_line(str(f), f"medseg {kind} folder")
    assert snapshot(f) == before


@pytest.mark.parametrize("stranger", ["notes.txt", "my_scan.dcm", ".hidden_draft"])
def test_train_force_over_a_run_holding_a_users_file_is_refused(cli, config_file, tmp_path, stranger):
    run = _fake_run(tmp_path / "run", extra=stranger)
    before = snapshot(run)
    r = cli("train", "--config", config_file(), "--out", run, "--force", "--no-progress")
    r.one_error_line(str(run / stranger), "not made by medseg")
    assert snapshot(run) == before


def test_train_force_onto_a_file_is_refused(cli, config_file, tmp_path):
    f = tmp_path / "run"
    f.write_text("a file")
    r = cli("train", "--config", config_file(), "--out", f, "--force", "--no-progress")
    r.one_error_line(str(f))
    assert f.read_text() == "a file"


def test_train_without_force_over_a_run_is_refused(cli, config_file, tmp_path):
    run = _fake_run(tmp_path / "run")
    before = snapshot(run)
    r = cli("train", "--config", config_file(), "--out", run, "--no-progress")
    r.one_error_line(str(run), "--force")
    assert snapshot(run) == before


def test_train_resume_and_force_together_refused(cli, config_file, tmp_path):
    r = cli("train", "--config", config_file(), "--out", tmp_path / "r", "--resume", "--force")
    r.one_error_line("--resume and --force")
    assert not (tmp_path / "r").exists()


def test_train_resume_with_nothing_to_resume(cli, config_file, tmp_path):
    r = cli("train", "--config", config_file(), "--out", tmp_path / "r", "--resume", "--no-progress")
    r.one_error_line(str(tmp_path / "r"), "nothing to resume")
    assert not (tmp_path / "r").exists()


def test_train_waiting_staged_run_needs_resume_or_force(cli, config_file, tmp_path):
    from medseg.training.run import staging_dir

    staged = _fake_run(staging_dir(tmp_path / "run"))
    before = snapshot(staged)
    r = cli("train", "--config", config_file(), "--out", tmp_path / "run", "--no-progress")
    r.one_error_line(str(staged), "--resume", "--force")
    assert snapshot(staged) == before


# ----------------------------------------------------------------------------- synth
@pytest.mark.parametrize("dataset", ["pancreas", "bagls"])
def test_synth_force_over_a_user_folder_is_refused(cli, user_folder, dataset):
    before = snapshot(user_folder)
    r = cli("data", "synth", dataset, "--out", user_folder, "--force")
    r.one_error_line(str(user_folder))
    assert snapshot(user_folder) == before


@pytest.mark.parametrize("dataset", ["pancreas", "bagls"])
def test_synth_without_force_over_anything_is_refused(cli, tiny_bagls, tmp_path, dataset):
    import shutil

    out = shutil.copytree(tiny_bagls, tmp_path / "synth")
    before = snapshot(out)
    r = cli("data", "synth", dataset, "--out", out)
    r.one_error_line(str(out), "--force")
    assert snapshot(out) == before


@pytest.mark.parametrize("dataset", ["pancreas", "bagls"])
def test_synth_force_over_synth_holding_a_users_file_is_refused(cli, tiny_bagls, tmp_path, dataset):
    import shutil

    out = shutil.copytree(tiny_bagls, tmp_path / "synth")
    (out / "my_notes.md").write_text("mine")
    before = snapshot(out)
    r = cli("data", "synth", dataset, "--out", out, "--force")
    r.one_error_line(str(out / "my_notes.md"), "not made by medseg")
    assert snapshot(out) == before


@pytest.mark.parametrize("dataset", ["pancreas", "bagls"])
def test_synth_force_onto_cwd_is_refused(cli, tiny_bagls, tmp_path, monkeypatch, dataset):
    import shutil

    out = shutil.copytree(tiny_bagls, tmp_path / "synth")
    monkeypatch.chdir(out / "training")
    before = snapshot(out)
    r = cli("data", "synth", dataset, "--out", out, "--force")
    r.one_error_line(str(out), "current folder")
    assert snapshot(out) == before


def test_synth_force_over_its_own_output_replaces_it(cli, tiny_bagls, tmp_path):
    import shutil

    out = shutil.copytree(tiny_bagls, tmp_path / "synth")
    r = cli("data", "synth", "bagls", "--out", out, "--force", "--frames", "2", "--test-frames", "1")
    assert r.rc == 0, r.err
    assert len(list((out / "training").glob("*_seg.png"))) == 2
    assert not list(tmp_path.glob(".synth.*"))  # no staging or old copy left


@pytest.mark.parametrize("dataset", ["pancreas", "bagls"])
def test_synth_onto_a_file_is_refused(cli, tmp_path, dataset):
    f = tmp_path / "file"
    f.write_text("x")
    r = cli("data", "synth", dataset, "--out", f)
    r.one_error_line(str(f), "not a folder")
    assert f.read_text() == "x"


# ----------------------------------------------------------------------------- data files
def test_prepare_split_out_existing_needs_force(cli, config_file, tmp_path):
    out = tmp_path / "split.json"
    out.write_text("precious")
    r = cli("data", "prepare", "--config", config_file(), "--split-out", out)
    r.one_error_line(str(out), "--force")
    assert out.read_text() == "precious"
    assert not (tmp_path / "cache").exists()  # refused before any work


@pytest.mark.parametrize("force", [False, True])
def test_prepare_split_out_never_overwrites_its_config(cli, config_file, force):
    cfg = config_file()
    before = cfg.read_bytes()
    r = cli("data", "prepare", "--config", cfg, "--split-out", cfg, *(["--force"] if force else []))
    r.one_error_line(str(cfg), "config file")
    assert cfg.read_bytes() == before


@pytest.mark.parametrize("force", [False, True])
def test_split_out_never_overwrites_its_config(cli, config_file, force):
    cfg = config_file()
    before = cfg.read_bytes()
    r = cli("data", "split", "--config", cfg, "--out", cfg, *(["--force"] if force else []))
    r.one_error_line(str(cfg), "config file")
    assert cfg.read_bytes() == before


def test_split_out_existing_needs_force(cli, config_file, tmp_path):
    out = tmp_path / "split.json"
    out.write_text("precious")
    r = cli("data", "split", "--config", config_file(), "--out", out)
    r.one_error_line(str(out), "--force")
    assert out.read_text() == "precious"


def test_split_out_folder_is_refused(cli, config_file, tmp_path):
    r = cli("data", "split", "--config", config_file(), "--out", tmp_path, "--force")
    r.one_error_line(str(tmp_path), "folder")


def test_prepare_split_out_with_force_writes(cli, config_file, tmp_path):
    out = tmp_path / "split.json"
    out.write_text("old")
    r = cli("data", "prepare", "--config", config_file(), "--split-out", out, "--force")
    assert r.rc == 0, r.err
    assert json.loads(out.read_text())["dataset"] == "pancreas"
    assert oct(os.stat(out).st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask():
    from medseg.io import current_umask

    return current_umask()


# ----------------------------------------------------------------------------- experiment / report
def test_experiment_into_a_user_folder_is_refused(cli, config_file, user_folder, tmp_path):
    import yaml

    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump({"base": str(config_file()), "grid": {"repeats": 1}}))
    before = snapshot(user_folder)
    r = cli("experiment", "--config", exp, "--out", user_folder, "--no-progress")
    r.one_error_line(str(user_folder), "not an experiment folder")
    assert snapshot(user_folder) == before


def test_report_of_a_user_folder_is_refused(cli, user_folder):
    before = snapshot(user_folder)
    r = cli("report", user_folder, "--no-qualitative")
    r.one_error_line(str(user_folder))
    assert snapshot(user_folder) == before


def test_report_missing_folder(cli, tmp_path):
    r = cli("report", tmp_path / "nope", "--no-qualitative")
    r.one_error_line(str(tmp_path / "nope"))
    assert not (tmp_path / "nope").exists()


@pytest.mark.parametrize("target", ["missing", "user_folder"])
def test_coadapt_on_a_non_run_is_refused(cli, tmp_path, user_folder, target):
    folder = tmp_path / "nope" if target == "missing" else user_folder
    before = snapshot(user_folder)
    r = cli("coadapt", folder, "--out", tmp_path / "co", "--no-progress")
    r.one_error_line(str(folder))
    assert snapshot(user_folder) == before
    assert not (tmp_path / "co").exists()


@pytest.mark.parametrize("target", ["missing", "user_folder", "file"])
def test_evaluate_a_non_run_is_refused(cli, tmp_path, user_folder, target):
    folder = {"missing": tmp_path / "nope", "user_folder": user_folder, "file": user_folder / "thesis.tex"}[target]
    before = snapshot(user_folder)
    r = cli("evaluate", folder, "--no-progress")
    r.one_error_line(str(folder))
    assert snapshot(user_folder) == before
