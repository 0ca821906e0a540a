"""One rule for what medseg may replace or remove (issue 20, mechanism 2): only what it made
(its marker, or its own naming checked by content), never an input of the same command (by
resolved path and by device/inode: links and other spellings too), never anything that is not
a regular file or a folder (device nodes, FIFOs, sockets, links). Its temporary, backup and
lock names are its own (a user's ``.<name>.old`` or ``.<name>.lock`` survives), a stale one
of its own is cleaned up, and ``report --force`` follows the rule of train and synth."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from hostile_helpers import series_files, snapshot, untrained_checkpoints



# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    """Untrained tiny checkpoints (milliseconds): a CT one and a frame (BAGLS) one."""
    return untrained_checkpoints(tmp_path_factory.mktemp("force_ckpts"))


@pytest.fixture
def scan(tiny_pancreas, tmp_path) -> Path:
    """A NIfTI CT scan of the tiny set (the user's input)."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(p) for p in series_files(tiny_pancreas)])
    path = tmp_path / "in" / "s.nii.gz"
    path.parent.mkdir()
    sitk.WriteImage(reader.Execute(), str(path), True)
    return path


@pytest.fixture
def frames(tiny_bagls, tmp_path) -> Path:
    """A folder with two frames ``a.png`` and ``a_mask.png`` (both the user's inputs)."""
    src = sorted(p for p in (tiny_bagls / "training").glob("*.png") if not p.name.endswith("_seg.png"))
    f = tmp_path / "frames"
    f.mkdir()
    shutil.copy(src[0], f / "a.png")
    shutil.copy(src[1], f / "a_mask.png")
    return f


def _special(path: Path, kind: str) -> Path:
    """A device node, FIFO or socket at ``path`` (device nodes need root, as the hostile runs)."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))
        s.close()
    else:
        if os.geteuid() != 0:
            pytest.skip("making a device node needs root")
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # as /dev/null
    return path


def _same_kind(path: Path, kind: str) -> bool:
    test = {"fifo": stat.S_ISFIFO, "socket": stat.S_ISSOCK, "device": stat.S_ISCHR}[kind]
    return test(os.lstat(path).st_mode)


# ----------------------------------------------------------------------------- predict: never an input
def test_predict_output_that_is_its_input_is_refused_even_with_force(cli, ckpts, scan):
    before = scan.read_bytes()
    r = cli("predict", "--checkpoint", ckpts["ct"], "--output", scan, "--force", "--no-progress", scan)
    r.one_error_line(str(scan), "input", "even with --force")
    assert scan.read_bytes() == before
    assert sorted(p.name for p in scan.parent.iterdir()) == ["s.nii.gz"]


@pytest.mark.parametrize("spelling", ["relative", "dotted", "symlink", "hardlink"])
def test_predict_output_that_is_its_input_by_another_name_is_refused(cli, ckpts, scan, monkeypatch, spelling):
    before = scan.read_bytes()
    if spelling == "relative":
        monkeypatch.chdir(scan.parent)
        out, inp = Path("s.nii.gz"), scan
    elif spelling == "dotted":
        out, inp = scan.parent / "." / ".." / scan.parent.name / "s.nii.gz", scan
    elif spelling == "symlink":  # the input given through a link, the output the real file
        link = scan.parent / "link.nii.gz"
        link.symlink_to(scan)
        out, inp = scan, link
    else:
        out = scan.parent / "hard.nii.gz"
        os.link(scan, out)
        inp = scan
    r = cli("predict", "--checkpoint", ckpts["ct"], "--output", out, "--force", "--no-progress", inp)
    r.one_error_line("input", "even with --force")
    assert scan.read_bytes() == before


def test_predict_two_frames_a_and_a_mask_into_their_own_folder(cli, ckpts, frames):
    """The first input's mask ``a_mask.png`` would overwrite the second input."""
    before = snapshot(frames)
    for force in ([], ["--force"]):
        r = cli("predict", "--checkpoint", ckpts["frame"], "--output", frames, "--no-progress", *force,
                frames / "a.png", frames / "a_mask.png")
        r.one_error_line(str(frames / "a_mask.png"), "input")
        assert snapshot(frames) == before


def test_predict_a_folder_of_frames_into_itself_never_overwrites_a_users_frame(cli, ckpts, frames):
    """Expanding the folder skips ``a_mask.png`` (predict's own naming); with --force an existing
    file among the inputs is never replaced: the user's frame or label cannot be told from a mask."""
    before = snapshot(frames)
    r = cli("predict", "--checkpoint", ckpts["frame"], "--output", frames, "--force", "--no-progress", frames)
    r.one_error_line(str(frames / "a_mask.png"), "folder of this command's inputs", "even with --force")
    assert snapshot(frames) == before


def test_predict_force_among_the_inputs_keeps_even_its_own_earlier_mask(cli, ckpts, frames):
    (frames / "a_mask.png").unlink()
    argv = ("predict", "--checkpoint", ckpts["frame"], "--output", frames, "--no-progress", frames / "a.png")
    assert cli(*argv).rc == 0
    before = snapshot(frames)
    cli(*argv, "--force").one_error_line(str(frames / "a_mask.png"), "another --output folder")
    assert snapshot(frames) == before


def test_predict_force_into_the_input_folder_keeps_a_users_uint8_label(cli, ckpts, scan, tmp_path):
    """Found by an independent sweep: a user's uint8 label ``a_mask.nii.gz`` next to ``a.nii.gz``
    looks exactly like a mask medseg writes; --force into that folder must keep it."""
    import SimpleITK as sitk

    folder = tmp_path / "pf"
    folder.mkdir()
    shutil.copy(scan, folder / "a.nii.gz")
    label = sitk.Cast(sitk.ReadImage(str(scan)) > 0, sitk.sitkUInt8)
    sitk.WriteImage(label, str(folder / "a_mask.nii.gz"))
    before = snapshot(folder)
    r = cli("predict", "--checkpoint", ckpts["ct"], "--output", folder, "--force", "--no-progress", folder)
    r.one_error_line(str(folder / "a_mask.nii.gz"), "even with --force")
    assert snapshot(folder) == before


def test_predict_force_over_a_ct_volume_named_like_the_mask_is_refused(cli, ckpts, scan, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(scan, out / "s_mask.nii.gz")  # the user's scan (int16 HU), not a uint8 mask
    before = snapshot(out)
    r = cli("predict", "--checkpoint", ckpts["ct"], "--output", out, "--force", "--no-progress", scan)
    r.one_error_line(str(out / "s_mask.nii.gz"), "not a medseg mask")
    assert snapshot(out) == before


def test_predict_force_over_a_ct_slice_named_like_the_seg_is_refused(cli, ckpts, pancreas_copy, tmp_path):
    files = series_files(pancreas_copy)
    out = tmp_path / "out.dcm"
    shutil.copy(files[0], out)  # a CT slice the user keeps under that name
    before = out.read_bytes()
    r = cli("predict", "--checkpoint", ckpts["ct"], "--output", out, "--force", "--no-progress", files[0].parent)
    r.one_error_line(str(out), "DICOM CT", "not a medseg seg")
    assert out.read_bytes() == before


def test_predict_seg_onto_a_slice_of_its_input_series_is_refused(cli, ckpts, pancreas_copy):
    files = series_files(pancreas_copy)
    series = files[0].parent
    before = snapshot(series)
    r = cli("predict", "--checkpoint", ckpts["ct"], "--output", files[2], "--format", "dicom-seg", "--force",
            "--no-progress", series)
    r.one_error_line(str(files[2]), "input", "even with --force")
    assert snapshot(series) == before


def test_predict_seg_onto_its_dicom_file_input_is_refused(cli, ckpts, pancreas_copy):
    one = series_files(pancreas_copy)[0]
    before = one.read_bytes()
    r = cli("predict", "--checkpoint", ckpts["ct"], "--output", one, "--force", "--no-progress", one)
    r.one_error_line(str(one), "input")
    assert one.read_bytes() == before


def test_predict_two_inputs_with_the_same_name_would_overwrite_each_other(cli, ckpts, frames, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(frames / "a.png", other / "a.png")
    out = tmp_path / "out"
    r = cli("predict", "--checkpoint", ckpts["frame"], "--output", out, "--no-progress",
            frames / "a.png", other / "a.png")
    r.one_error_line(str(other / "a.png"), "distinct names")
    assert not out.exists()


@pytest.mark.parametrize("kind", ["fifo", "socket", "device", "symlink"])
def test_predict_force_onto_a_special_file_is_refused(cli, ckpts, scan, tmp_path, kind):
    out = tmp_path / "m.nii.gz"
    if kind == "symlink":
        (tmp_path / "elsewhere.nii.gz").write_bytes(b"someone's file")
        out.symlink_to(tmp_path / "elsewhere.nii.gz")
    else:
        _special(out, kind)
    r = cli("predict", "--checkpoint", ckpts["ct"], "--output", out, "--force", "--no-progress", scan)
    r.one_error_line(str(out), "refusing to replace it")
    if kind == "symlink":
        assert out.is_symlink() and (tmp_path / "elsewhere.nii.gz").read_bytes() == b"someone's file"
    else:
        assert _same_kind(out, kind)


# ----------------------------------------------------------------------------- data split / bench
@pytest.mark.parametrize("kind", ["device", "fifo", "socket"])
def test_data_split_force_onto_a_special_file_is_refused(cli, config_file, tmp_path, kind):
    node = _special(tmp_path / "node", kind)
    r = cli("data", "split", "--config", config_file(), "--out", node, "--force")
    r.one_error_line(str(node), "even with --force")
    assert _same_kind(node, kind)


def test_data_split_force_onto_a_link_to_its_config_is_refused(cli, config_file, tmp_path):
    cfg = config_file()
    before = cfg.read_bytes()
    link = tmp_path / "split.json"
    link.symlink_to(cfg)
    r = cli("data", "split", "--config", cfg, "--out", link, "--force")
    r.one_error_line(str(link), "config file")
    assert link.is_symlink() and cfg.read_bytes() == before


def test_data_split_force_onto_the_split_file_it_reads_is_refused(cli, config_file, tmp_path):
    first = tmp_path / "first.json"
    assert cli("data", "split", "--config", config_file(), "--out", first).rc == 0
    before = first.read_bytes()
    r = cli("data", "split", "--config", config_file(), "--out", first, "--force", f"data.split_file={first}")
    r.one_error_line(str(first), "split file")
    assert first.read_bytes() == before


@pytest.mark.parametrize("kind", ["device", "fifo", "socket"])
def test_bench_force_onto_a_special_file_is_refused_before_measuring(cli, tmp_path, kind):
    node = _special(tmp_path / "node", kind)
    r = cli("bench", "--quick", "--section", "regularizers", "--out", node, "--force")
    r.one_error_line(str(node), "even with --force")
    assert r.out == ""  # nothing measured
    assert _same_kind(node, kind)


def test_atomic_write_never_replaces_a_special_file(tmp_path):
    from medseg.errors import MedsegError
    from medseg.io import atomic_write_text

    fifo = _special(tmp_path / "results.csv", "fifo")
    with pytest.raises(MedsegError, match="FIFO"):
        atomic_write_text(fifo, "x\n")
    assert _same_kind(fifo, "fifo") and sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]


# ----------------------------------------------------------------------------- backups and temporaries
def test_replace_dir_leaves_a_users_dot_old_folder_alone(tmp_path):
    from medseg.io import atomic_dir, mark_folder

    (tmp_path / "r0").mkdir()
    mark_folder(tmp_path / "r0", "run")
    mine = tmp_path / ".r0.old"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's backup")
    with atomic_dir(tmp_path / "r0") as tmp:
        (tmp / "new.txt").write_text("new")
    assert (mine / "notes.txt").read_text() == "the user's backup"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".r0.old", "r0"]
    assert (tmp_path / "r0" / "new.txt").is_file()


@pytest.mark.parametrize("what", ["file", "dangling_link"])
def test_a_users_dot_old_file_or_link_does_not_break_a_replacement(tmp_path, what):
    """A fixed ``.<name>.old`` once held by a file made every later replacement fail."""
    from medseg.io import atomic_dir

    (tmp_path / "d").mkdir()
    old = tmp_path / ".d.old"
    if what == "file":
        old.write_text("mine")
    else:
        old.symlink_to(tmp_path / "nowhere")
    for _ in range(2):
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "x").write_text("x")
    assert os.path.lexists(old) and sorted(p.name for p in tmp_path.iterdir()) == [".d.old", "d"]


def test_synth_force_leaves_a_users_dot_bagls_old_alone(cli, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    argv = ("data", "synth", "bagls", "--out", data / "bagls", "--frames", "2", "--test-frames", "1")
    assert cli(*argv).rc == 0
    mine = data / ".bagls.old"
    mine.mkdir()
    (mine / "0.png").write_bytes(b"the user's frame")
    r = cli(*argv, "--force")
    assert r.rc == 0, r.err
    assert (mine / "0.png").read_bytes() == b"the user's frame"
    assert sorted(p.name for p in data.iterdir()) == [".bagls.old", "bagls"]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_medseg_temporaries_are_cleaned_and_a_users_are_not(cli, tmp_path):
    from medseg.io import _host_tag

    data = tmp_path / "data"
    data.mkdir()
    dead = _dead_pid()
    stale = data / f".bagls.abcd1234.{_host_tag()}-{dead}.tmp"  # a synth killed while writing
    stale.mkdir()
    (stale / "0.png").write_bytes(b"half")
    live = data / f".bagls.efgh5678.{_host_tag()}-{os.getpid()}.tmp"  # a writer still running
    live.mkdir()
    users = [data / ".bagls.tmp", data / ".bagls.mine.tmp", data / f".bagls.abcd1234.ffff-{dead}.tmp"]
    for u in users:
        u.mkdir()
        (u / "keep").write_text("mine")
    r = cli("data", "synth", "bagls", "--out", data / "bagls", "--frames", "2", "--test-frames", "1")
    assert r.rc == 0, r.err
    assert not stale.exists() and live.is_dir()
    assert all((u / "keep").read_text() == "mine" for u in users)


def test_a_backup_left_by_a_kill_between_the_renames_is_moved_back(tmp_path):
    """Killed after the old folder went to its backup name and before the new one came in:
    the next replacement restores the old folder first (and nothing is lost)."""
    from medseg.io import _host_tag, atomic_dir

    dead = _dead_pid()
    backup = tmp_path / f".d.zzzz9999.{_host_tag()}-{dead}.old"
    backup.mkdir()
    (backup / "old.txt").write_text("previous")
    from medseg.io import clean_stale_temporaries

    clean_stale_temporaries(tmp_path / "d")
    assert (tmp_path / "d" / "old.txt").read_text() == "previous" and not backup.exists()
    with atomic_dir(tmp_path / "d") as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


# ----------------------------------------------------------------------------- locks
@pytest.mark.parametrize("content", [b"my lab notebook\n", b'{"not": "a lock"}', b"\xff\xfe binary"])
def test_a_users_file_named_like_the_lock_is_never_truncated_or_removed(tmp_path, content):
    from medseg.errors import MedsegError
    from medseg.io import folder_lock, lock_path

    run = tmp_path / "r0"
    lock = lock_path(run)
    lock.write_bytes(content)
    with pytest.raises(MedsegError, match="not a medseg lock"):
        with folder_lock(run, "run"):
            pass
    assert lock.read_bytes() == content


@pytest.mark.parametrize("kind", ["symlink", "fifo", "folder"])
def test_a_lock_name_held_by_a_link_fifo_or_folder_is_refused(tmp_path, kind):
    from medseg.errors import MedsegError
    from medseg.io import folder_lock, lock_path

    run = tmp_path / "r0"
    lock = lock_path(run)
    target = tmp_path / "precious.txt"
    target.write_text("precious")
    if kind == "symlink":
        lock.symlink_to(target)
    elif kind == "fifo":
        os.mkfifo(lock)
    else:
        lock.mkdir()
    with pytest.raises(MedsegError):
        with folder_lock(run, "run"):
            pass
    assert target.read_text() == "precious" and os.path.lexists(lock)


def test_a_users_dot_name_dot_lock_is_left_alone(tmp_path):
    """The lock is medseg's own name now: a user's ``.r0.lock`` is not touched at all."""
    from medseg.io import folder_lock

    mine = tmp_path / ".r0.lock"
    mine.write_text("my lock of something else")
    with folder_lock(tmp_path / "r0", "run"):
        pass
    assert mine.read_text() == "my lock of something else"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".r0.lock"]


def test_a_users_file_named_like_the_results_lock_is_refused_untouched(tmp_path):
    from medseg.errors import MedsegError
    from medseg.experiments.results import append_run
    from medseg.io import lock_path

    exp = tmp_path / "exp"
    exp.mkdir()
    lock = lock_path(exp / "results.csv")
    lock.write_text("the user's file")
    (exp / "results.csv.lock").write_text("an older name, also the user's")
    row = {"dataset": "pancreas", "model": "unet", "regularizer": "none", "params": "{}", "repeat": 0,
           "fold": 0, "seed": 0, "case_id": "c", "dice": 0.5, "iou": 0.3, "hd95": 1.0, "nsd": 0.5,
           "best_val_dice": 0.5, "run_dir": "r"}
    with pytest.raises(MedsegError, match="not a medseg lock"):
        append_run(exp / "results.csv", [row])
    assert lock.read_text() == "the user's file" and not (exp / "results.csv").exists()
    lock.unlink()
    append_run(exp / "results.csv", [row])
    assert (exp / "results.csv.lock").read_text() == "an older name, also the user's"


# ----------------------------------------------------------------------------- report --force
def _experiment(folder: Path) -> Path:
    """An experiment folder with a minimal results.csv (2 methods × 2 repeats × 2 cases)."""
    from medseg.experiments.results import append_run

    folder.mkdir()
    for reg in ("none", "heuristic"):
        for rep in range(2):
            rows = [{"dataset": "pancreas", "model": "unet", "regularizer": reg, "params": "{}", "repeat": rep,
                     "fold": 0, "seed": rep, "case_id": f"c{i}", "dice": 0.5 + 0.1 * i + 0.01 * rep,
                     "iou": 0.4, "hd95": 2.0, "nsd": 0.5, "best_val_dice": 0.6,
                     "run_dir": f"runs/{reg}/repeat{rep}"} for i in range(2)]
            append_run(folder / "results.csv", rows)
    return folder


@pytest.fixture
def experiment(tmp_path) -> Path:
    return _experiment(tmp_path / "exp")


@pytest.mark.parametrize("stranger", ["notes.txt", "my_figure.png", "summary_mine.csv", "sub/thing.md"])
def test_report_force_refuses_a_report_folder_holding_the_users_files(cli, experiment, stranger):
    assert cli("report", experiment, "--no-qualitative").rc == 0
    extra = experiment / "report" / stranger
    extra.parent.mkdir(exist_ok=True)
    extra.write_text("the user's")
    before = snapshot(experiment / "report")
    r = cli("report", experiment, "--no-qualitative", "--force")
    r.one_error_line(str(experiment / "report" / stranger.split("/")[0]), "not made by medseg")
    assert snapshot(experiment / "report") == before


def test_report_force_replaces_its_own_report(cli, experiment):
    assert cli("report", experiment, "--no-qualitative").rc == 0
    (experiment / "report" / "report.md").write_text("stale")
    r = cli("report", experiment, "--no-qualitative", "--force")
    assert r.rc == 0, r.err
    assert (experiment / "report" / "report.md").read_text() != "stale"
    assert sorted(p.name for p in experiment.iterdir() if p.name.startswith(".report")) == []


def test_report_force_over_an_unmarked_folder_needs_a_report_in_it(cli, experiment):
    folder = experiment / "report"
    folder.mkdir()
    (folder / "summary.csv").write_text("the user's own table")
    r = cli("report", experiment, "--no-qualitative", "--force")
    r.one_error_line(str(folder), "no report.md")
    assert (folder / "summary.csv").read_text() == "the user's own table"


@pytest.mark.parametrize("kind", ["file", "symlink", "dangling", "fifo"])
def test_report_force_over_a_file_or_link_named_report_is_refused_and_later_runs_work(cli, experiment,
                                                                                    tmp_path, kind):
    target = experiment / "report"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("keep")
    if kind == "file":
        target.write_text("the user's report")
    elif kind == "symlink":
        target.symlink_to(elsewhere)
    elif kind == "dangling":
        target.symlink_to(tmp_path / "nowhere")
    else:
        os.mkfifo(target)
    r = cli("report", experiment, "--no-qualitative", "--force")
    r.one_error_line(str(target), "refusing to replace it")
    assert os.path.lexists(target) and (elsewhere / "keep.txt").read_text() == "keep"
    if kind == "file":
        assert target.read_text() == "the user's report"
    # the user moves it away: every later run works
    target.unlink()
    assert cli("report", experiment, "--no-qualitative").rc == 0
    assert cli("report", experiment, "--no-qualitative", "--force").rc == 0
    assert (experiment / "report" / "report.md").is_file()


@pytest.mark.parametrize("what", ["file", "link", "folder"])
def test_report_runs_with_a_fixed_dot_report_old_left_by_an_older_version(cli, experiment, what):
    """An older medseg left ``.report.old`` as a file or link after --force over one; it made
    every later run fail. Now the backup name is unique and that entry is never touched."""
    old = experiment / ".report.old"
    if what == "file":
        old.write_text("x")
    elif what == "link":
        old.symlink_to(experiment / "nowhere")
    else:
        old.mkdir()
        (old / "notes.md").write_text("the user's")
    for force in ([], ["--force"], ["--force"]):
        assert cli("report", experiment, "--no-qualitative", *force).rc == 0
    assert os.path.lexists(old)
    if what == "folder":
        assert (old / "notes.md").read_text() == "the user's"


def test_report_force_refuses_another_medseg_folder_named_report(cli, experiment):
    from medseg.io import mark_folder

    folder = experiment / "report"
    folder.mkdir()
    mark_folder(folder, "run")
    (folder / "report.md").write_text("x")
    before = snapshot(folder)
    r = cli("report", experiment, "--no-qualitative", "--force")
    r.one_error_line(str(folder), "medseg run folder")
    assert snapshot(folder) == before


def test_report_marker_lists_what_the_report_wrote(cli, experiment):
    assert cli("report", experiment, "--no-qualitative").rc == 0
    marker = json.loads((experiment / "report" / ".medseg").read_text())
    assert marker["kind"] == "report"
    assert set(marker["files"]) == {p.name for p in (experiment / "report").iterdir()} - {".medseg"}


def test_train_refuses_when_a_users_file_holds_the_lock_name(cli, config_file, tmp_path):
    from medseg.io import lock_path

    run = tmp_path / "run"
    lock = lock_path(run)
    lock.write_text("the user's notes")
    r = cli("train", "--config", config_file(), "--out", run, "--no-progress")
    r.one_error_line(str(lock), "not a medseg lock")
    assert lock.read_text() == "the user's notes" and not run.exists()


@pytest.mark.slow
def test_train_force_leaves_a_users_dot_run_old_alone(cli, config_file, run_copy, tmp_path):
    mine = tmp_path / ".run.old"
    mine.mkdir()
    (mine / "checkpoints").mkdir()
    (mine / "checkpoints" / "best.ckpt").write_bytes(b"the user's own backup")
    from medseg.io import mark_folder

    mark_folder(mine, "run")  # even a copy of a run folder the user keeps under that name
    before = snapshot(mine)
    r = cli("train", "--config", config_file(), "--out", run_copy, "--force", "--no-progress")
    assert r.rc == 0, r.err
    assert snapshot(mine) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".run")) == [".run.old"]


def test_predict_cleans_the_staging_folder_of_a_killed_predict_only(cli, ckpts, scan, tmp_path):
    from medseg.io import _host_tag

    out = tmp_path / "out"
    out.mkdir()
    dead = _dead_pid()
    stale = out / f".medseg-predict.abcd1234.{_host_tag()}-{dead}.tmp"
    stale.mkdir()
    (stale / "s_mask.nii.gz").write_bytes(b"half")
    mine = out / ".medseg-predict-notes.tmp"
    mine.mkdir()
    (mine / "keep").write_text("the user's")
    r = cli("predict", "--checkpoint", ckpts["ct"], "--output", out, "--no-progress", scan)
    assert r.rc == 0, r.err
    assert sorted(p.name for p in out.iterdir()) == [".medseg-predict-notes.tmp", "s_mask.nii.gz"]
    assert (mine / "keep").read_text() == "the user's"


@pytest.mark.parametrize("to", ["empty_folder", "synth_folder", "dangling"])
def test_synth_out_a_symlink_is_refused_before_any_work(cli, tmp_path, to):
    target = tmp_path / "target"
    if to == "empty_folder":
        target.mkdir()
    elif to == "synth_folder":
        assert cli("data", "synth", "bagls", "--out", target, "--frames", "2", "--test-frames", "1").rc == 0
    link = tmp_path / "link"
    link.symlink_to(target)
    before = snapshot(target) if target.exists() else None
    r = cli("data", "synth", "bagls", "--out", link, "--frames", "2", "--test-frames", "1", "--force")
    r.one_error_line(str(link), "symbolic link")
    assert link.is_symlink() and (snapshot(target) if target.exists() else None) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["link"] + (["target"] if to != "dangling" else []))


def test_report_on_a_full_disk_keeps_the_previous_report(cli, small_fs):
    fs = small_fs("2m")
    exp = _experiment(fs / "exp")
    assert cli("report", exp, "--no-qualitative").rc == 0
    before = snapshot(exp / "report")
    from hostile_helpers import fill

    fill(fs)
    r = cli("report", exp, "--no-qualitative", "--force")
    r.one_error_line(str(exp / "report"), "no space left on device")
    assert snapshot(exp / "report") == before
    assert not [p.name for p in exp.iterdir() if ".tmp" in p.name or p.name.endswith(".old")]


@pytest.mark.parametrize("where", ["checkpoints/notes.txt", "logs/my_plot.png", "checkpoints/sub/x.ckpt.bak"])
def test_train_force_refuses_a_run_holding_a_users_file_in_a_subfolder(cli, config_file, tmp_path, where):
    from medseg.io import mark_folder

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "logs").mkdir()
    mark_folder(run, "run")
    (run / "config.yaml").write_text("seed: 0\n")
    (run / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    (run / where).parent.mkdir(parents=True, exist_ok=True)
    (run / where).write_text("the user's")
    before = snapshot(run)
    r = cli("train", "--config", config_file(), "--out", run, "--force", "--no-progress")
    r.one_error_line(str(run / where), "not made by medseg")
    assert snapshot(run) == before


@pytest.mark.parametrize("where", ["training/notes.txt", "test/extra/annotations.csv"])
def test_synth_force_refuses_a_dataset_holding_a_users_file_in_a_subfolder(cli, tmp_path, where):
    argv = ("data", "synth", "bagls", "--out", tmp_path / "bagls", "--frames", "2", "--test-frames", "1")
    assert cli(*argv).rc == 0
    stranger = tmp_path / "bagls" / where
    stranger.parent.mkdir(parents=True, exist_ok=True)
    stranger.write_text("the user's")
    before = snapshot(tmp_path / "bagls")
    r = cli(*argv, "--force")
    r.one_error_line(str(stranger), "not made by medseg")
    assert snapshot(tmp_path / "bagls") == before
