"""The CLI's error boundary, disk full / read-only / permission failures, Ctrl-C, umask.

Full and read-only file systems are real tmpfs mounts where allowed (root), else
skipped; the injected-OSError cases run everywhere and take the same code paths.
"""

from __future__ import annotations

import errno
import json
import os
import stat

import pytest

from hostile_helpers import fill

# ----------------------------------------------------------------------------- real file systems


@pytest.mark.parametrize("dataset", ["pancreas", "bagls"])
def test_synth_on_a_full_disk(cli, small_fs, dataset):
    fs = small_fs("256k")
    fill(fs)
    out = fs / "synth"
    r = cli("data", "synth", dataset, "--out", out, *(["--cases", "1", "--size", "32", "--slices", "6"]
                                                      if dataset == "pancreas" else ["--frames", "4"]))
    r.one_error_line("no space left on device")
    assert sorted(p.name for p in fs.iterdir()) == ["filler"]  # no partial dataset, no staging


@pytest.mark.parametrize("dataset", ["pancreas", "bagls"])
def test_synth_on_a_read_only_fs(cli, small_fs, dataset):
    fs = small_fs("64k", readonly=True)
    r = cli("data", "synth", dataset, "--out", fs / "synth")
    r.one_error_line(str(fs / "synth"), "read-only file system")
    assert list(fs.iterdir()) == []


def test_split_on_a_full_disk(cli, small_fs, config_file):
    fs = small_fs("64k")
    fill(fs)
    r = cli("data", "split", "--config", config_file(), "--out", fs / "split.json")
    r.one_error_line(str(fs / "split.json"), "no space left")
    assert sorted(p.name for p in fs.iterdir()) == ["filler"]


def test_split_on_a_read_only_fs(cli, small_fs, config_file):
    fs = small_fs("64k", readonly=True)
    r = cli("data", "split", "--config", config_file(), "--out", fs / "split.json")
    r.one_error_line(str(fs / "split.json"), "read-only")


def test_prepare_cache_on_a_full_disk(cli, small_fs, config_file):
    fs = small_fs("128k")
    fill(fs)
    r = cli("data", "prepare", "--config", config_file(), f"data.cache_dir={fs / 'cache'}")
    r.one_error_line(str(fs), "no space left")
    assert not list(fs.rglob("*.tmp*"))  # no half-written cache entry


def test_prepare_cache_on_a_read_only_fs(cli, small_fs, config_file):
    fs = small_fs("64k", readonly=True)
    r = cli("data", "prepare", "--config", config_file(), f"data.cache_dir={fs / 'cache'}")
    r.one_error_line(str(fs / "cache"), "read-only")


def test_train_out_on_a_read_only_fs(cli, small_fs, config_file):
    fs = small_fs("64k", readonly=True)
    r = cli("train", "--config", config_file(), "--out", fs / "run", "--no-progress")
    r.one_error_line(str(fs), "read-only")
    assert list(fs.iterdir()) == []


def test_train_out_on_a_full_disk(cli, small_fs, config_file):
    fs = small_fs("64k")
    fill(fs)
    r = cli("train", "--config", config_file(), "--out", fs / "run", "--no-progress")
    r.one_error_line(str(fs), "no space left")
    assert sorted(p.name for p in fs.iterdir()) == ["filler"]


def test_experiment_on_a_read_only_fs(cli, small_fs, config_file, tmp_path):
    import yaml

    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump({"base": str(config_file()), "grid": {"repeats": 1}}))
    fs = small_fs("64k", readonly=True)
    r = cli("experiment", "--config", exp, "--out", fs / "exp", "--no-progress")
    r.one_error_line(str(fs), "read-only")


def test_atomic_checkpoint_save_on_a_full_disk_keeps_the_old_file(small_fs):
    import torch

    from medseg.training.checkpoint import AtomicCheckpointIO

    fs = small_fs("512k")
    path = fs / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"w": torch.zeros(1000)}, path)
    before = path.read_bytes()
    with pytest.raises(OSError) as exc:
        io.save_checkpoint({"w": torch.zeros(200_000)}, path)  # 800 kB: does not fit
    assert exc.value.errno == errno.ENOSPC and exc.value.filename == str(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in fs.iterdir()) == ["last.ckpt"]  # no temporary file left


# ----------------------------------------------------------------------------- injected OSErrors
OS_ERRORS = {
    "ENOSPC": (errno.ENOSPC, "no space left on device"),
    "EACCES": (errno.EACCES, "permission denied"),
    "EROFS": (errno.EROFS, "read-only file system"),
    "EIO": (errno.EIO, "Input/output error"),
}


def _raise_on_fsync(monkeypatch, code):
    import medseg.io as mio

    def failing(path):
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(mio, "fsync_file", failing)


@pytest.mark.parametrize("name", sorted(OS_ERRORS))
def test_split_write_failure_one_line(cli, config_file, tmp_path, monkeypatch, name):
    code, words = OS_ERRORS[name]
    out = tmp_path / "split.json"
    out.write_text("old")
    _raise_on_fsync(monkeypatch, code)
    r = cli("data", "split", "--config", config_file(), "--out", out, "--force")
    r.one_error_line(str(out), words)
    assert out.read_text() == "old"  # the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("name", sorted(OS_ERRORS))
def test_synth_write_failure_one_line(cli, tmp_path, monkeypatch, name):
    import sys

    import medseg.data  # noqa: F401

    sb = sys.modules["medseg.data.synth_bagls"]
    code, words = OS_ERRORS[name]

    def failing(array):
        raise OSError(code, os.strerror(code), str(tmp_path / "x.png"))

    monkeypatch.setattr(sb, "_png_bytes", failing)
    r = cli("data", "synth", "bagls", "--out", tmp_path / "synth", "--frames", "2")
    r.one_error_line("x.png", words)
    assert not (tmp_path / "synth").exists() and not list(tmp_path.glob(".synth*"))


@pytest.mark.parametrize("name", sorted(OS_ERRORS))
def test_prepare_read_failure_one_line(cli, config_file, monkeypatch, name):
    import medseg.data.cache as cache

    code, words = OS_ERRORS[name]

    def failing(image, label, channels=None):
        raise OSError(code, os.strerror(code), str(image))

    monkeypatch.setattr(cache, "source_fingerprint", failing)
    r = cli("data", "prepare", "--config", config_file())
    r.one_error_line("PANCREAS_000", words)


@pytest.mark.parametrize("name", sorted(OS_ERRORS))
def test_train_failure_before_training_one_line(cli, config_file, tmp_path, monkeypatch, name):
    import medseg.training.run as run_mod

    code, words = OS_ERRORS[name]

    def failing(*a, **k):
        raise OSError(code, os.strerror(code), str(tmp_path / "data" / "cache"))

    monkeypatch.setattr(run_mod, "_train", failing)
    r = cli("train", "--config", config_file(), "--out", tmp_path / "run", "--no-progress")
    r.one_error_line("cache", words)
    assert not (tmp_path / "run").exists()
    assert not list(tmp_path.glob(".run*"))  # the staged run (no epoch yet) is gone, lock released


# ----------------------------------------------------------------------------- decoding errors, bugs, Ctrl-C
def _command_raising(monkeypatch, exc):
    import medseg.commands.data as data_cmd

    def raising(args):
        raise exc

    monkeypatch.setattr(data_cmd, "_run_check", raising)
    return ["data", "check", "pancreas", "whatever"]


@pytest.mark.parametrize("exc,words", [
    (json.JSONDecodeError("Expecting value", "x", 0), "JSONDecodeError"),
    (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), "UnicodeDecodeError"),
    (EOFError("Ran out of input"), "EOFError"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "/x/y.nii.gz"), "/x/y.nii.gz"),
    (PermissionError(errno.EACCES, "Permission denied", "/x/secret"), "/x/secret: permission denied"),
])
def test_library_decoding_errors_become_one_line(cli, monkeypatch, exc, words):
    r = cli(*_command_raising(monkeypatch, exc))
    r.one_error_line(words)


def test_pil_decompression_bomb_becomes_one_line(cli, monkeypatch):
    from PIL import Image

    r = cli(*_command_raising(monkeypatch, Image.DecompressionBombError("100000x100000 pixels")))
    r.one_error_line("DecompressionBombError")


def test_yaml_error_names_its_file(cli, monkeypatch, tmp_path):
    import yaml

    f = tmp_path / "x.yaml"
    f.write_text("a: [1\n")
    with open(f) as fh:
        try:
            yaml.safe_load(fh)
        except yaml.YAMLError as exc:
            err = exc
    r = cli(*_command_raising(monkeypatch, err))
    r.one_error_line(str(f))


@pytest.mark.parametrize("bug", [ZeroDivisionError, KeyError, AttributeError, TypeError, AssertionError])
def test_a_genuine_bug_keeps_its_traceback(cli, monkeypatch, bug):
    from medseg.cli import main

    argv = _command_raising(monkeypatch, bug("a bug"))
    with pytest.raises(bug):
        main(argv)


COMMAND_TARGETS = {
    "data_synth": (["data", "synth", "bagls", "--out", "{tmp}/s"], "medseg.data", "synth_bagls"),
    "data_check": (["data", "check", "bagls", "{bagls}"], "medseg.data", "check_dataset"),
    "data_prepare": (["data", "prepare", "--config", "{cfg}"], "medseg.data.cache", "prepare"),
    "data_split": (["data", "split", "--config", "{cfg}", "--out", "{tmp}/s.json"], "medseg.data.splits", "make_split"),
    "train": (["train", "--config", "{cfg}", "--out", "{tmp}/run", "--no-progress"], "medseg.training.run", "_train"),
    "evaluate": (["evaluate", "{tmp}/run", "--no-progress"], "medseg.training.run", "evaluate_run"),
    "experiment": (["experiment", "--config", "{exp}", "--out", "{tmp}/e", "--no-progress"],
                   "medseg.experiments.runner", "_run_experiment_locked"),
    "report": (["report", "{tmp}/e", "--no-qualitative"], "medseg.experiments.report", "write_report"),
    "coadapt": (["coadapt", "{tmp}/run", "--no-progress"], "medseg.experiments.coadapt", "run_coadapt"),
    "predict": (["predict", "--checkpoint", "{tmp}/x.ckpt", "--output", "{tmp}/out", "{tmp}/in.png"],
                "medseg.predict", "predict"),
}


@pytest.mark.parametrize("command", sorted(COMMAND_TARGETS))
def test_ctrl_c_in_every_subcommand(cli, monkeypatch, tmp_path, config_file, tiny_bagls, command):
    import importlib

    import yaml

    argv, module, attr = COMMAND_TARGETS[command]
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump({"base": str(config_file()), "grid": {"repeats": 1}}))
    (tmp_path / "run").mkdir()
    fmt = {"tmp": tmp_path, "cfg": config_file(), "exp": exp, "bagls": tiny_bagls}
    mod = importlib.import_module(module)

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(mod, attr, interrupted, raising=True)
    r = cli(*[a.format(**fmt) for a in argv])
    assert r.rc == 130, (r.rc, r.err)
    assert r.err.strip().splitlines()[-1] == "medseg: interrupted"
    assert "Traceback" not in r.err
    assert not (tmp_path / "s").exists() and not (tmp_path / "s.json").exists()


# ----------------------------------------------------------------------------- permissions
@pytest.mark.parametrize("umask,file_mode,dir_mode", [(0o022, 0o644, 0o755), (0o002, 0o664, 0o775),
                                                      (0o077, 0o600, 0o700)])
def test_outputs_follow_the_umask(cli, tmp_path, config_file, umask, file_mode, dir_mode):
    old = os.umask(umask)
    try:
        r = cli("data", "synth", "bagls", "--out", tmp_path / "synth", "--frames", "2", "--test-frames", "1")
        assert r.rc == 0, r.err
        r = cli("data", "split", "--config", config_file(), "--out", tmp_path / "split.json")
        assert r.rc == 0, r.err
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "split.json").st_mode) == file_mode
    assert stat.S_IMODE(os.stat(tmp_path / "synth").st_mode) == dir_mode
    for p in (tmp_path / "synth").rglob("*"):
        assert stat.S_IMODE(p.stat().st_mode) == (dir_mode if p.is_dir() else file_mode), p
