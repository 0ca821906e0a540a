"""Writes that fail loudly (issue 20, mechanism 1): every output file goes through one checked
path — a temporary name in its folder, checked (not empty, every byte, readable back where
cheap), fsync-ed, renamed. A full disk (a real tmpfs), a file size limit (``RLIMIT_FSIZE`` in
a subprocess: EFBIG), an I/O error or a writer that fails silently (SimpleITK) is one line
naming the file and the reason, a non-zero exit, and the previous file under the final name
intact; no temporary file is left behind."""

from __future__ import annotations

import contextlib
import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest

from hostile_helpers import fill, series_files, snapshot, untrained_checkpoints



# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    """Untrained tiny checkpoints (milliseconds): a CT one and a frame (BAGLS) one."""
    return untrained_checkpoints(tmp_path_factory.mktemp("write_ckpts"))


@pytest.fixture(scope="module")
def ct_nifti(tiny_pancreas, tmp_path_factory) -> Path:
    """One scan of the tiny set as a NIfTI CT volume (HU)."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(p) for p in series_files(tiny_pancreas)])
    path = tmp_path_factory.mktemp("write_inputs") / "scan.nii.gz"
    sitk.WriteImage(reader.Execute(), str(path), True)
    return path


def _frame(tiny_bagls) -> Path:
    return sorted(p for p in (tiny_bagls / "training").glob("*.png") if not p.name.endswith("_seg.png"))[0]


def _no_temporaries(folder: Path) -> None:
    left = [p.name for p in folder.rglob("*") if ".tmp" in p.name or p.name.startswith(".medseg-predict")]
    assert not left, left


#: one predict per output kind: (checkpoint, input, extra arguments, the file that must be named)
KINDS = {
    "nifti_mask": ("ct", "nifti", [], "scan_mask.nii.gz"),
    "probabilities": ("ct", "nifti", ["--save-probabilities"], "scan_"),
    "uncertainty": ("ct", "nifti", ["--uncertainty"], "scan_"),
    "ct_overlay": ("ct", "nifti", ["--overlay"], "scan_"),
    "dicom_seg": ("ct", "dicom", ["--format", "dicom-seg"], "PANCREAS_0001"),
    "frame_png": ("frame", "frame", [], "_mask.png"),
    "frame_overlay": ("frame", "frame", ["--overlay"], ".png"),
}


def _predict_args(kind, ckpts, ct_nifti, tiny_pancreas, tiny_bagls, out):
    ck, source, extra, named = KINDS[kind]
    inp = {"nifti": ct_nifti, "dicom": series_files(tiny_pancreas)[0].parent,
           "frame": _frame(tiny_bagls)}[source]
    return ["predict", "--checkpoint", ckpts[ck], "--output", out, "--no-progress", *extra, inp], named


# ----------------------------------------------------------------------------- predict, full disk
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_predict_on_a_full_disk_is_one_line_and_leaves_nothing(cli, small_fs, ckpts, ct_nifti, tiny_pancreas,
                                                                tiny_bagls, kind):
    fs = small_fs("256k")
    fill(fs)
    argv, named = _predict_args(kind, ckpts, ct_nifti, tiny_pancreas, tiny_bagls, fs / "out")
    r = cli(*argv)
    line = r.one_error_line(str(fs / "out"), rc=2)
    assert "no space left on device" in line and named in line
    assert not (fs / "out").exists()  # the folder predict made is gone again
    assert sorted(p.name for p in fs.iterdir()) == ["filler"]


@pytest.mark.parametrize("kind", ["nifti_mask", "probabilities", "dicom_seg", "frame_png", "ct_overlay"])
def test_predict_force_on_a_full_disk_keeps_the_previous_files(cli, small_fs, ckpts, ct_nifti, tiny_pancreas,
                                                                 tiny_bagls, kind):
    fs = small_fs("1m")
    out = fs / "out"
    argv, _ = _predict_args(kind, ckpts, ct_nifti, tiny_pancreas, tiny_bagls, out)
    assert cli(*argv).rc == 0
    before = snapshot(out)
    assert before and all(before.values())
    fill(fs)
    r = cli(*argv, "--force")
    line = r.one_error_line(rc=2)
    assert "no space left on device" in line and "earlier files kept" in line
    assert snapshot(out) == before  # the good files are not replaced by empty or cut ones
    _no_temporaries(out)


@contextlib.contextmanager
def file_size_limit(limit: int):
    """``ulimit -f``: files of this process stop at ``limit`` bytes (EFBIG; Python ignores
    SIGXFSZ), restored after."""
    import resource

    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old)


@pytest.mark.parametrize("extra,cut", [(["--save-probabilities"], "scan_prob.nii.gz"),
                                       (["--uncertainty"], "scan_uncertainty.nii.gz")])
def test_predict_under_a_file_size_limit_refuses_cut_maps(cli, ckpts, ct_nifti, tmp_path, extra, cut):
    """``ulimit -f``: SimpleITK cut the maps at the limit and predict said 'wrote'; now EFBIG is
    one line naming the map, and the earlier (complete) files stay."""
    out = tmp_path / "out"
    argv = ["predict", "--checkpoint", ckpts["ct"], "--output", out, "--no-progress", *extra, ct_nifti]
    assert cli(*argv).rc == 0
    before = snapshot(out)
    with file_size_limit(4096):
        r = cli(*argv, "--force")
    line = r.one_error_line(str(out / cut))
    assert "file size limit" in line and "4096" in line
    assert snapshot(out) == before
    _no_temporaries(out)


def test_predict_frame_mask_under_a_file_size_limit(cli, ckpts, tiny_bagls, tmp_path):
    out = tmp_path / "out"
    with file_size_limit(64):
        r = cli("predict", "--checkpoint", ckpts["frame"], "--output", out, "--no-progress", _frame(tiny_bagls))
    line = r.one_error_line("_mask.png")
    assert "too large" in line.lower()
    assert not out.exists()


# ----------------------------------------------------------------------------- SimpleITK fails silently
def _sitk_writes(monkeypatch, what: str):
    """SimpleITK.WriteImage that does not raise but leaves ``what``: an empty file, a cut
    gzip stream, nothing at all; or that raises its RuntimeError."""
    import SimpleITK as sitk

    real = sitk.WriteImage

    def fake(img, name, *args, **kwargs):
        if what == "raises":
            raise RuntimeError("Exception thrown in SimpleITK ImageFileWriter_Execute: ... \n"
                               "itk::ERROR: NiftiImageIO(0x1): ImageIO cannot write file")
        if what == "nothing":
            return None
        real(img, name, *args, **kwargs)
        data = Path(name).read_bytes()
        Path(name).write_bytes(b"" if what == "empty" else data[: len(data) // 2])

    monkeypatch.setattr(sitk, "WriteImage", fake)


@pytest.mark.parametrize("what", ["empty", "cut", "nothing", "raises"])
def test_silent_simpleitk_failure_keeps_the_previous_mask(monkeypatch, tmp_path, what):
    from medseg.predict.writers import write_nifti

    path = tmp_path / "a_mask.nii.gz"
    write_nifti(path, np.ones((4, 16, 16)), None, np.uint8)
    good = path.read_bytes()
    _sitk_writes(monkeypatch, what)
    with pytest.raises(OSError) as info:
        write_nifti(path, np.random.default_rng(0).random((4, 16, 16)), None, np.float32)
    assert info.value.filename == str(path)  # the file asked for, not the temporary name
    assert path.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_mask.nii.gz"]


@pytest.mark.parametrize("ending", [".nii", ".nrrd", ".mha"])
def test_silently_cut_label_maps_of_every_format_are_refused(monkeypatch, tmp_path, ending):
    from medseg.predict.writers import write_label_map

    path = tmp_path / f"case{ending}"
    _sitk_writes(monkeypatch, "cut")
    with pytest.raises(OSError) as info:
        write_label_map(path, np.random.default_rng(0).integers(0, 3, (4, 16, 16)), None)
    assert info.value.filename == str(path)
    assert not path.exists() and not list(tmp_path.iterdir())


def test_silent_simpleitk_failure_in_predict_is_one_line(cli, monkeypatch, ckpts, ct_nifti, tmp_path):
    out = tmp_path / "out"
    assert cli("predict", "--checkpoint", ckpts["ct"], "--output", out, "--no-progress", ct_nifti).rc == 0
    before = snapshot(out)
    _sitk_writes(monkeypatch, "empty")
    r = cli("predict", "--checkpoint", ckpts["ct"], "--output", out, "--no-progress", "--force", ct_nifti)
    line = r.one_error_line(str(out / "scan_mask.nii.gz"))
    assert "empty" in line
    assert snapshot(out) == before


# ----------------------------------------------------------------------------- every other kind of file
def test_checkpoint_save_on_a_full_disk_keeps_the_previous_checkpoint(small_fs):
    import torch

    from medseg.training.checkpoint import AtomicCheckpointIO

    fs = small_fs("512k")
    path = fs / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"w": torch.zeros(10)}, path)
    good = path.read_bytes()
    fill(fs)
    with pytest.raises(OSError) as info:
        AtomicCheckpointIO().save_checkpoint({"w": torch.ones(50_000)}, path)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert path.read_bytes() == good
    assert sorted(p.name for p in fs.iterdir()) == ["filler", "last.ckpt"]


def test_checkpoint_save_under_a_file_size_limit(tmp_path):
    import torch

    from medseg.training.checkpoint import AtomicCheckpointIO

    path = tmp_path / "best.ckpt"
    path.write_bytes(b"the previous checkpoint")
    with file_size_limit(8192), pytest.raises(OSError) as info:
        AtomicCheckpointIO().save_checkpoint({"w": torch.ones(100_000)}, path)
    assert info.value.errno == errno.EFBIG and info.value.filename == str(path)
    assert path.read_bytes() == b"the previous checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.ckpt"]


@pytest.mark.parametrize("kind", ["csv", "json", "figure", "results"])
def test_tables_and_figures_on_a_full_disk_keep_the_previous_file(small_fs, kind):
    from medseg.io import atomic_write_text

    fs = small_fs("256k")
    names = {"csv": ["cases.csv"], "json": ["metrics.json"], "figure": ["box.png", "box.svg"],
             "results": ["results.csv"]}[kind]

    def write(big: bool):
        n = 20_000 if big else 1
        if kind == "csv":
            atomic_write_text(fs / "cases.csv", "case_id,dice\n" + "c,0.5\n" * n)
        elif kind == "json":
            atomic_write_text(fs / "metrics.json", json.dumps({"dice": [0.5] * n}))
        elif kind == "figure":
            from medseg.experiments.figures import new_figure, save_figure

            fig = new_figure(8 if big else 1, 8 if big else 1)
            ax = fig.add_subplot(1, 1, 1)
            ax.plot(np.random.default_rng(0).random(n))
            save_figure(fig, fs / "box")
        else:
            from medseg.experiments.results import append_run

            rows = [{"dataset": "pancreas", "model": "unet", "regularizer": "none", "params": "{}",
                     "repeat": 0, "fold": 0, "seed": 0, "case_id": f"c{i}", "dice": 0.5, "iou": 0.3,
                     "hd95": 1.0, "nsd": 0.5, "best_val_dice": 0.5, "run_dir": f"r{int(big)}"}
                    for i in range(n)]
            append_run(fs / "results.csv", rows)

    write(False)
    before = {n: (fs / n).read_bytes() for n in names}
    fill(fs)
    with pytest.raises(OSError) as info:
        write(True)
    assert info.value.errno == errno.ENOSPC and Path(info.value.filename).name in names
    assert {n: (fs / n).read_bytes() for n in names} == before
    assert not [p for p in fs.iterdir() if ".tmp" in p.name]


def test_an_fsync_io_error_keeps_the_previous_file(monkeypatch, tmp_path):
    from medseg.io import atomic_write_text

    path = tmp_path / "metrics.json"
    path.write_text("{}\n")

    def broken(fd):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError) as info:
        atomic_write_text(path, '{"dice": 1}\n')
    assert info.value.errno == errno.EIO and info.value.filename == str(path)
    assert path.read_text() == "{}\n" and sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_a_writer_that_writes_nothing_is_an_error(tmp_path):
    from medseg.io import atomic_write_with

    path = tmp_path / "fig.png"
    path.write_bytes(b"old figure")
    with pytest.raises(OSError) as info:
        atomic_write_with(path, lambda tmp: None, suffix=".png")
    assert info.value.filename == str(path) and "empty" in str(info.value)
    assert path.read_bytes() == b"old figure" and len(list(tmp_path.iterdir())) == 1


def test_a_short_write_is_caught_to_the_byte(monkeypatch, tmp_path):
    """A file object that drops bytes silently (a broken network file system) is caught by
    the size check before the rename."""
    import builtins

    from medseg.io import atomic_write_bytes

    path = tmp_path / "best.ckpt"
    path.write_bytes(b"complete old checkpoint")
    real_open = builtins.open

    class Dropping:
        def __init__(self, fh):
            self.fh = fh

        def write(self, data):
            return self.fh.write(bytes(data)[:10])

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    def fake_open(file, mode="r", *a, **k):
        fh = real_open(file, mode, *a, **k)
        return Dropping(fh) if ".tmp" in str(file) and "w" in mode else fh

    monkeypatch.setattr(builtins, "open", fake_open)
    with pytest.raises(OSError) as info:
        atomic_write_bytes(path, b"x" * 1000)
    monkeypatch.undo()
    assert info.value.filename == str(path) and "10 of 1000 bytes" in str(info.value)
    assert path.read_bytes() == b"complete old checkpoint"


def test_data_split_on_a_full_disk_keeps_the_previous_split(cli, small_fs, config_file):
    fs = small_fs("256k")
    out = fs / "split.json"
    assert cli("data", "split", "--config", config_file(), "--out", out).rc == 0
    before = out.read_bytes()
    fill(fs)
    r = cli("data", "split", "--config", config_file(), "--out", out, "--force", "data.split_seed=7")
    line = r.one_error_line(str(out))
    assert "no space left on device" in line
    assert out.read_bytes() == before


def test_synth_on_a_full_disk_is_one_line_and_leaves_no_staging(cli, small_fs):
    fs = small_fs("256k")
    r = cli("data", "synth", "pancreas", "--out", fs / "data", "--cases", "2", "--size", "64", "--slices", "12")
    r.one_error_line(str(fs / "data"), "no space left on device")
    assert list(fs.iterdir()) == []


def test_synth_image_writes_are_checked(monkeypatch, tmp_path):
    """The synthetic label NIfTI goes through the checked writer too (SimpleITK may not raise)."""
    from medseg.data import synth_pancreas

    _sitk_writes(monkeypatch, "cut")
    with pytest.raises(OSError):
        synth_pancreas(tmp_path / "data", cases=1, size=32, slices=6, seed=0)
    assert not (tmp_path / "data").exists() and list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- training logs
@pytest.mark.parametrize("which", ["tensorboard", "csv"])
def test_a_training_log_on_a_full_disk_is_one_medseg_error(small_fs, which):
    """Lightning's TensorBoard logger turned a full disk into 'ValueError: you tried to log 1.0
    which is currently not supported'; now both loggers raise one line naming the log."""
    from medseg.errors import MedsegError
    from medseg.training.run import CheckedTensorBoardLogger, HistoryCSVLogger

    fs = small_fs("64k")
    logger = (CheckedTensorBoardLogger(fs, name="logs", version="", default_hp_metric=False)
              if which == "tensorboard" else HistoryCSVLogger(fs, name="logs", version=""))
    logger.log_metrics({"x": 1.0}, step=0)
    logger.save()
    fill(fs)
    with pytest.raises(MedsegError) as info:
        for step in range(1, 500):
            logger.log_metrics({"train_loss": 1.0, "val_dice": 0.5}, step=step)
            logger.save()
    message = str(info.value)
    assert message.startswith(str(fs / "logs")) and "cannot write the training log" in message
    assert "no space left on device" in message
    logger.finalize("failed")  # after a failure it closes quietly


def test_a_logger_bug_is_not_mistaken_for_a_full_disk(tmp_path):
    from medseg.training.run import CheckedTensorBoardLogger

    logger = CheckedTensorBoardLogger(tmp_path, name="logs", version="", default_hp_metric=False)
    with pytest.raises(ValueError):
        logger.log_metrics({"x": object()}, step=0)


@pytest.mark.slow
def test_train_on_a_full_disk_is_one_line(cli, config_file, small_fs):
    fs = small_fs("150k")
    r = cli("train", "--config", config_file(), "--out", fs / "run", "--no-progress")
    line = r.one_error_line(str(fs), rc=2)
    assert "no space left on device" in line
    assert not (fs / "run").exists()


def test_a_closed_tensorboard_logger_can_be_asked_for_its_writer_again(tmp_path):
    """Lightning reads ``experiment`` again after ``finalize`` (its writer then has no
    ``all_writers``): the quiet-thread hook must not break that."""
    from medseg.training.run import CheckedTensorBoardLogger

    logger = CheckedTensorBoardLogger(tmp_path, name="logs", version="", default_hp_metric=False)
    logger.log_metrics({"x": 1.0}, step=0)
    logger.finalize("success")
    assert logger.experiment is not None
    logger.log_metrics({"x": 2.0}, step=1)
    logger.finalize("success")


@pytest.mark.parametrize("kind", ["csv", "json", "figure", "png_mask", "seg_like_bytes"])
def test_every_file_kind_under_a_file_size_limit_keeps_the_previous_file(tmp_path, kind):
    """EFBIG (``ulimit -f``) for each writer kind: one OSError naming the file, the old file whole."""
    from medseg.io import atomic_write_bytes, atomic_write_text

    names = {"csv": "cases.csv", "json": "metrics.json", "figure": "box", "png_mask": "a_mask.png",
             "seg_like_bytes": "a_seg.dcm"}
    target = tmp_path / names[kind]

    def write():
        if kind == "csv":
            atomic_write_text(target, "case_id,dice\n" + "c,0.5\n" * 5000)
        elif kind == "json":
            atomic_write_text(target, json.dumps({"dice": [0.5] * 5000}))
        elif kind == "figure":
            from medseg.experiments.figures import new_figure, save_figure

            fig = new_figure(6, 6)
            fig.add_subplot(1, 1, 1).plot(np.random.default_rng(0).random(5000))
            save_figure(fig, target)
        elif kind == "png_mask":
            from medseg.predict.writers import write_frame_mask

            write_frame_mask(target, np.random.default_rng(0).random((256, 256)) > 0.5)
        else:
            atomic_write_bytes(target, os.urandom(20_000))

    files = [target.with_name(f"box.{e}") for e in ("png", "svg")] if kind == "figure" else [target]
    for f in files:
        f.write_bytes(b"the previous file")
    with file_size_limit(2048), pytest.raises(OSError) as info:
        write()
    assert info.value.errno == errno.EFBIG and Path(info.value.filename) in files
    assert all(f.read_bytes() == b"the previous file" for f in files)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f.name for f in files)


def test_bench_results_on_a_full_disk_are_one_line(cli, small_fs):
    fs = small_fs("256k")
    out = fs / "bench.json"
    out.write_text('{"previous": true}\n')
    fill(fs)
    r = cli("bench", "--quick", "--section", "regularizers", "--only", "none", "--out", out, "--force")
    assert r.rc == 2 and "Traceback" not in r.err + r.out
    errors = [ln for ln in r.err.splitlines() if ln.startswith("medseg: error: ")]
    others = [ln for ln in r.err.splitlines() if ln.strip() and not ln.startswith("  … ")]  # progress
    assert errors == others and len(errors) == 1
    assert str(out) in errors[0] and "no space left on device" in errors[0]
    assert out.read_text() == '{"previous": true}\n'
