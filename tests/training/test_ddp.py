"""One run on several devices: 2-process DDP on CPU (gloo) via ``medseg train`` (medseg.training.run).

Lightning's DDP launcher re-executes the command line once per extra device, so
the run is started as a real ``python -m medseg train`` subprocess. The test split
has 3 scans on 2 ranks: the distributed sampler pads rank 1 with a repeat of a
scan, so the gathered rows must be de-duplicated for each case to count once.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from medseg.cli import main

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "cpu" / "pancreas_unet.yaml"
#: 1 training scan of 12 slices, 1 validation scan, 3 test scans (odd: padding happens)
OVERRIDES = ["data.size=[64,64]", "data.num_cases=5", "data.split=[1,1,3]", "model.base_channels=4",
             "model.depth=3", "train.epochs=1", "train.batch_size=8", "train.progress_bar=false",
             "train.num_threads=1", "eval.batch_size=16"]
#: launcher variables that must not leak from the test's environment into the run
LAUNCH_VARS = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "WORLD_SIZE", "MASTER_ADDR",
               "MASTER_PORT", "PL_GLOBAL_SEED", "TORCHELASTIC_RUN_ID")


def read_cases(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _group_alive(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group, from /proc."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        state, group = fields[0], int(fields[2])
        if group == pgid and state != "Z":
            alive.append(int(entry.name))
    return alive


def run_in_group(cmd: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """Run ``cmd`` in its own process group; kill the whole group if it hangs or leaves strays."""
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"DDP run did not finish in {timeout} s:\n{out[-3000:]}") from None
    # the rank-1 process is a child of rank 0: it must be gone too (bounded wait for its exit)
    deadline = time.monotonic() + 30
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    strays = _group_alive(proc.pid)
    if strays:
        os.killpg(proc.pid, signal.SIGKILL)
    assert not strays, f"processes left behind by the DDP run: {strays}"
    return subprocess.CompletedProcess(cmd, proc.returncode, out, None)


@pytest.mark.slow
def test_two_process_ddp_counts_every_case_once_and_matches_single_process_eval(
        pancreas_root, cache_dir, tmp_path):
    run = tmp_path / "ddp_run"
    cmd = [sys.executable, "-m", "medseg", "train", "--config", str(CONFIG), "--out", str(run),
           "--no-progress", f"data.root={pancreas_root}", f"data.cache_dir={cache_dir}", *OVERRIDES,
           "train.accelerator=cpu", "train.devices=2", "train.strategy=ddp"]
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS and not k.startswith("SLURM_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    result = run_in_group(cmd, env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]

    # two processes really shared the epoch: 12 training slices → 6 per rank → 1 step of 8
    # (a single process would take 2 steps)
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 1

    # every test case exactly once, although rank 1 scored a padded repeat
    split = json.loads((run / "split.json").read_text())
    assert len(split["test"]) == 3
    rows = read_cases(run / "cases.csv")
    assert [r["case_id"] for r in rows] == sorted(split["test"])
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_cases"] == 3

    # only rank 0 wrote run files: TensorBoard events of one process, the two checkpoints
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    events = list((run / "logs").glob("events.out.tfevents.*"))  # …<host>.<pid>.<n>
    assert events and len({e.name.split(".")[-2] for e in events}) == 1
    assert sorted(p.name for p in run.iterdir()) == [  # .medseg: the run-folder marker (--force guard)
        ".medseg", "cases.csv", "checkpoints", "config.yaml", "logs", "metrics.json", "split.json"]
    assert not list(run.parent.glob(f".{run.name}.*"))  # staged, renamed into place, lock released

    # the gathered DDP evaluation equals a single-process evaluation of the same checkpoint
    single = tmp_path / "single"
    shutil.copytree(run, single)
    (single / "cases.csv").unlink()
    (single / "metrics.json").unlink()
    assert main(["evaluate", str(single), "--no-progress"]) == 0
    assert read_cases(single / "cases.csv") == rows
    again = json.loads((single / "metrics.json").read_text())
    for key in ("dice_mean", "dice_std", "iou_mean", "iou_std", "pooled_dice", "n_cases"):
        assert again[key] == metrics[key], key


def test_launcher_rank_from_the_environment(monkeypatch):
    from medseg.training.run import launcher_rank_is_zero

    for var in (*LAUNCH_VARS, "SLURM_NTASKS", "SLURM_PROCID", "SLURM_JOB_NAME", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(var, raising=False)
    assert launcher_rank_is_zero()
    monkeypatch.setenv("LOCAL_RANK", "1")  # a process re-executed by Lightning's launcher
    assert not launcher_rank_is_zero()
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("NODE_RANK", "1")  # local rank 0 of the second node
    assert not launcher_rank_is_zero()
    monkeypatch.delenv("NODE_RANK")
    monkeypatch.delenv("LOCAL_RANK")
    monkeypatch.setenv("SLURM_NTASKS", "8")  # srun starts every rank itself
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    monkeypatch.setenv("SLURM_PROCID", "3")
    assert not launcher_rank_is_zero()
    monkeypatch.setenv("SLURM_PROCID", "0")
    assert launcher_rank_is_zero()


def test_a_single_device_run_ignores_launcher_variables(pancreas_cfg, tmp_path, monkeypatch):
    """e.g. a Ray worker on a SLURM node: a one-device run prepares its own folder."""
    from medseg.training.run import prepare_run_dir

    monkeypatch.setenv("LOCAL_RANK", "1")
    plan = prepare_run_dir(tmp_path / "run", pancreas_cfg, resume=False, force=False)
    # a new run is prepared in its staging folder (renamed onto tmp_path/run when complete)
    assert plan.target == tmp_path / "run" and plan.work != plan.target
    assert (plan.work / "split.json").is_file() and (plan.work / "config.yaml").is_file()
    assert plan.split["test"]


@pytest.mark.slow
def test_a_grid_run_on_two_devices_runs_as_its_own_medseg_train(pancreas_root, cache_dir, tmp_path):
    """In a grid, a multi-device run is a `medseg train` subprocess (Lightning re-executes it per rank)."""
    import yaml

    from medseg.experiments import read_experiment, run_experiment
    from medseg.experiments import results as results_mod

    f = tmp_path / "ddp_grid.yaml"
    f.write_text(yaml.safe_dump({"base": str(CONFIG), "grid": {"repeats": 1}}))
    resolved = read_experiment(f, [f"data.root={pancreas_root}", f"data.cache_dir={cache_dir}", *OVERRIDES,
                                   "train.accelerator=cpu", "train.devices=2", "train.strategy=ddp"])
    out = tmp_path / "exp"
    saved = {k: os.environ.pop(k) for k in LAUNCH_VARS if k in os.environ}
    try:
        outcome = run_experiment(resolved, out, progress=False)
    finally:
        os.environ.update(saved)
    assert len(outcome.ran) == 1
    run = out / outcome.ran[0]
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 1  # sharded
    rows = results_mod.read_results(out / "results.csv")
    split = json.loads((out / "split.json").read_text())
    assert sorted(r["case_id"] for r in rows) == sorted(split["test"])
    assert [r["case_id"] for r in rows] == [r["case_id"] for r in read_cases(run / "cases.csv")]
    assert not list(run.parent.glob(".*.yaml"))  # the temporary config is gone
