"""kill -9 and Ctrl-C (SIGINT) at chosen moments of real ``medseg`` processes.

A driver starts ``medseg.cli.main`` in a subprocess with one function wrapped so that
it writes a flag file and sleeps at the chosen moment (a training step of a given
epoch, the fsync of a given ``last.ckpt`` save, a synthetic frame); the test waits
for the flag, then sends the signal. After a kill -9 during an epoch or during a
checkpoint save, ``--resume`` must continue from the newest complete checkpoint and
lose no finished epoch except the one whose save was cut (at most one).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import yaml

from hostile_helpers import tiny_run_config

pytestmark = pytest.mark.slow

DRIVER = textwrap.dedent("""
    import os, sys, time, pathlib
    flag, point, at = pathlib.Path(os.environ["H_FLAG"]), os.environ["H_POINT"], int(os.environ["H_AT"])

    def pause():
        flag.write_text(str(os.getpid()))
        time.sleep(300)

    if point == "epoch":
        from medseg.training.module import SegmentationModule
        real_step = SegmentationModule.training_step
        def step(self, batch, i):
            if self.current_epoch == at and i == 0:
                pause()
            return real_step(self, batch, i)
        SegmentationModule.training_step = step
    elif point == "test":
        from medseg.training.module import SegmentationModule
        real_test = SegmentationModule.test_step
        def test_step(self, *a, **k):
            pause()
            return real_test(self, *a, **k)
        SegmentationModule.test_step = test_step
    elif point == "save":
        import medseg.io as mio
        real_fsync, saves = mio.fsync_file, []
        def fsync(path):
            real_fsync(path)
            if pathlib.Path(path).name.startswith(".last.ckpt."):
                saves.append(path)
                if len(saves) == at + 1:  # the data is in the temporary file, not yet renamed
                    pause()
        mio.fsync_file = fsync
    elif point == "synth":
        import medseg.data
        mod = sys.modules["medseg.data.synth_bagls"]
        real_frame = mod.bagls_frame
        def frame(i, split="training", seed=0):
            if i == at:
                pause()
            return real_frame(i, split, seed)
        mod.bagls_frame = frame
    from medseg.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def _start(tmp_path, point, at, *argv):
    flag = tmp_path / f"flag-{point}-{at}"
    env = {**os.environ, "H_FLAG": str(flag), "H_POINT": point, "H_AT": str(at), "PYTHONUNBUFFERED": "1"}
    # SIGINT at its default in the child: a shell runs background jobs (nohup … &) with SIGINT
    # ignored, which children inherit, and Python then installs no KeyboardInterrupt handler
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, *map(str, argv)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 240
    while not flag.exists():
        if proc.poll() is not None:
            raise AssertionError(f"driver ended early: {proc.communicate()}")
        assert time.time() < deadline, "the chosen moment never came"
        time.sleep(0.05)
    return proc


def _config(tmp_path, tiny_pancreas, epochs=3):
    cfg = tiny_run_config(tiny_pancreas, tmp_path / "cache", train={"epochs": epochs})
    f = tmp_path / "cfg.yaml"
    f.write_text(yaml.safe_dump(cfg))
    return f


def _epoch(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])


def _resume(cli, cfg, run):
    r = cli("train", "--config", cfg, "--out", run, "--resume", "--no-progress")
    assert r.rc == 0, r.err
    line = next(ln for ln in r.out.splitlines() if ln.startswith("resuming"))
    return line, r


def test_kill_9_during_an_epoch_loses_only_that_epoch(cli, tmp_path, tiny_pancreas, record_property):
    from medseg.training.run import staging_dir

    cfg, run = _config(tmp_path, tiny_pancreas), tmp_path / "run"
    proc = _start(tmp_path, "epoch", 2, "train", "--config", cfg, "--out", run, "--no-progress")
    proc.kill()
    proc.wait()
    staged = staging_dir(run)
    assert not run.exists() and _epoch(staged / "checkpoints" / "last.ckpt") == 1
    line, _ = _resume(cli, cfg, run)
    done = int(line.split("(epoch ")[1].split()[0])
    # killed at the start of the 3rd epoch (2 finished): the finished ones are all kept
    assert line.startswith(f"resuming from {staged / 'checkpoints'}") and done == 2
    record_property("finished_epochs_lost_kill_in_epoch", 2 - done)
    assert _epoch(run / "checkpoints" / "last.ckpt") == 2 and (run / "metrics.json").is_file()
    assert not staged.exists()


def test_kill_9_during_a_checkpoint_save(cli, tmp_path, tiny_pancreas, record_property):
    from medseg.training.run import staging_dir

    cfg, run = _config(tmp_path, tiny_pancreas), tmp_path / "run"
    # the save of last.ckpt after the 2nd epoch: written and fsync-ed, not yet renamed
    proc = _start(tmp_path, "save", 1, "train", "--config", cfg, "--out", run, "--no-progress")
    proc.kill()
    proc.wait()
    ckpts = staging_dir(run) / "checkpoints"
    assert _epoch(ckpts / "last.ckpt") == 0  # the complete previous one, never a truncated file
    assert list(ckpts.glob(".last.ckpt.*.tmp"))  # the cut save is a temporary file only
    line, r = _resume(cli, cfg, run)
    done = int(line.split("(epoch ")[1].split()[0])
    assert done in (1, 2)  # last.ckpt of epoch 1, or best.ckpt if epoch 2 improved and was saved first
    record_property("finished_epochs_lost_kill_in_save", 2 - done)
    assert not list((run / "checkpoints").glob(".*.tmp"))  # the partial save was cleaned up
    assert _epoch(run / "checkpoints" / "last.ckpt") == 2 and (run / "metrics.json").is_file()


def test_ctrl_c_during_training_exits_130_and_keeps_the_epochs(cli, tmp_path, tiny_pancreas):
    from medseg.training.run import staging_dir

    cfg, run = _config(tmp_path, tiny_pancreas, epochs=2), tmp_path / "run"
    proc = _start(tmp_path, "epoch", 1, "train", "--config", cfg, "--out", run, "--no-progress")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "medseg: interrupted" and "Traceback" not in err
    assert "--resume" in err
    assert not run.exists() and _epoch(staging_dir(run) / "checkpoints" / "last.ckpt") == 0
    line, _ = _resume(cli, cfg, run)
    assert "(epoch 1 done)" in line and (run / "metrics.json").is_file()


def test_ctrl_c_during_an_experiment_exits_130(tmp_path, tiny_pancreas):
    from medseg.io import lock_path

    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump({"base": str(_config(tmp_path, tiny_pancreas, epochs=2)), "grid": {"repeats": 1}}))
    out = tmp_path / "e"
    proc = _start(tmp_path, "epoch", 1, "experiment", "--config", exp, "--out", out, "--no-progress")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "medseg: interrupted" and "Traceback" not in err
    assert not (out / "results.csv").exists()  # no half-finished run counted
    assert not lock_path(out).exists()


def test_ctrl_c_during_synth_leaves_nothing(tmp_path):
    out = tmp_path / "synth"
    proc = _start(tmp_path, "synth", 2, "data", "synth", "bagls", "--out", out, "--frames", "4")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "medseg: interrupted" and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".synth*"))


def test_kill_9_during_synth_leaves_no_dataset_and_a_rerun_works(cli, tmp_path):
    out = tmp_path / "synth"
    proc = _start(tmp_path, "synth", 2, "data", "synth", "bagls", "--out", out, "--frames", "4")
    proc.kill()
    proc.wait()
    assert not out.exists()  # only a hidden staging folder may remain
    r = cli("data", "synth", "bagls", "--out", out, "--frames", "4", "--test-frames", "1")
    assert r.rc == 0, r.err
    assert len(list((out / "training").glob("*_seg.png"))) == 4


def test_ctrl_c_during_evaluate_exits_130_and_keeps_the_metrics(run_copy, tmp_path):
    from hostile_helpers import snapshot

    before = snapshot(run_copy)
    proc = _start(tmp_path, "test", 0, "evaluate", run_copy, "--no-progress")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "medseg: interrupted" and "Traceback" not in err
    assert snapshot(run_copy) == before
