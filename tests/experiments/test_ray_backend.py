"""The experiment grid on Ray (medseg.experiments.ray_backend) and the grid's resource keys.

The Ray tests run the session's tiny grid (tests/experiments/conftest.py: 2 methods ×
2 repeats, 1 epoch of a base-4 U-Net) on a local Ray instance with 2 CPUs and compare
``results.csv`` with the local backend's, row for row. Ray is installed by the
``test`` extra; only where it cannot be installed are they skipped.
"""

from __future__ import annotations

import copy
import csv
import os
import sys
from pathlib import Path

import pytest
import yaml

from medseg.cli import main
from medseg.errors import ConfigError, MedsegError
from medseg.experiments import read_experiment, run_experiment
from medseg.experiments import results as results_mod
from medseg.experiments.runner import expand, make_job

REPO = Path(__file__).resolve().parents[2]
BASE = REPO / "configs" / "cpu" / "pancreas_unet.yaml"


def rows_of(out: Path) -> list[dict]:
    with open(out / "results.csv", newline="") as fh:
        return sorted(csv.DictReader(fh), key=lambda r: (r["run_dir"], r["case_id"]))


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray", reason="Ray cannot be installed here (pip install 'medseg[ray]')")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=128 * 1024 * 1024)
    yield ray
    ray.shutdown()


# --------------------------------------------------------------------------- on Ray


@pytest.mark.slow
def test_ray_grid_writes_the_local_rows_and_resumes(tiny_grid, grid_file, ray_local, tmp_path, capsys):
    local_out, resolved, overrides = tiny_grid
    out = tmp_path / "ray"
    plan = [s.rel_dir for s in expand(resolved)]
    # interrupted after 3 of the 4 runs (the CLI, as a user would run it)
    assert main(["experiment", "--config", str(grid_file), "--out", str(out), "--backend", "ray",
                 "--max-runs", "3", "--no-progress", *overrides]) == 0
    assert "4 runs: 0 already done, 3 run now, 1 left" in capsys.readouterr().out
    assert results_mod.finished_runs(out / "results.csv") == set(plan[:3])
    # the runs were Ray tasks: their TensorBoard files name another process
    events = list((out / plan[0] / "logs").glob("events.out.tfevents.*"))  # …<host>.<pid>.<n>
    assert events and all(e.name.split(".")[-2] != str(os.getpid()) for e in events)
    # the same command resumes: only the missing run is trained
    assert main(["experiment", "--config", str(grid_file), "--out", str(out), "--backend", "ray",
                 "--no-progress", *overrides]) == 0
    assert "4 runs: 3 already done, 1 run now, 0 left" in capsys.readouterr().out
    # same rows as the local backend: same cases, seeds, dice and iou, to the last digit
    assert rows_of(out) == rows_of(local_out)
    assert {r["seed"] for r in rows_of(out)} == {"0", "1"}

    # a run whose rows are lost is redone on Ray, the others are kept
    lost = plan[1]
    assert results_mod.prune(out / "results.csv", lambda r: r["run_dir"] != lost) > 0
    outcome = run_experiment(resolved, out, backend="ray", progress=False)
    assert outcome.ran == [lost] and outcome.done_before == 3
    assert rows_of(out) == rows_of(local_out)


@pytest.mark.slow
def test_a_failing_ray_task_is_a_one_line_error_naming_the_run(tiny_grid, ray_local, tmp_path):
    from medseg.experiments.ray_backend import RayBackend
    from medseg.experiments.runner import execute_run

    local_out, resolved, _ = tiny_grid
    spec = expand(resolved)[0]
    job = make_job(spec, tmp_path / "exp", tmp_path / "no_such_split.json")
    with pytest.raises(MedsegError) as info:
        list(RayBackend().map(execute_run, [job]))
    msg = str(info.value)
    assert msg.startswith(f"run {spec.rel_dir}: ") and "no_such_split.json" in msg and "\n" not in msg


# --------------------------------------------------------------------------- without Ray / schema


def test_backend_ray_without_ray_says_how_to_install(grid_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    out = tmp_path / "never"
    assert main(["experiment", "--config", str(grid_file), "--out", str(out), "--backend", "ray",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "medseg: error: --backend ray needs Ray, which is not installed: pip install 'medseg[ray]'"
    assert not out.exists()


def test_address_is_only_for_ray(grid_file, tmp_path, capsys):
    assert main(["experiment", "--config", str(grid_file), "--out", str(tmp_path / "x"),
                 "--address", "auto"]) == 2
    assert "--address is for --backend ray" in capsys.readouterr().err


def test_resources_schema_defaults_and_jobs(tmp_path):
    f = tmp_path / "e.yaml"
    f.write_text(yaml.safe_dump({"base": str(BASE), "grid": {"repeats": 1}}))
    r = read_experiment(f)
    assert r["resources"] == {"cpus_per_run": 1, "gpus_per_run": 0}
    r2 = read_experiment(f, ["grid.gpus_per_run=0.5", "grid.cpus_per_run=4"])
    assert r2["resources"] == {"cpus_per_run": 4, "gpus_per_run": 0.5}
    spec = expand(r2)[0]
    job = make_job(spec, tmp_path, tmp_path / "split.json", resources=r2["resources"])
    assert (job.cpus, job.gpus) == (4, 0.5)
    for bad, key in (("grid.gpus_per_run=-1", "grid.gpus_per_run"), ("grid.cpus_per_run=0", "grid.cpus_per_run"),
                     ("grid.cpus_per_run=true", "grid.cpus_per_run"), ("grid.gpus_per_run=two", "grid.gpus_per_run")):
        with pytest.raises(ConfigError, match=f"'{key}'"):
            read_experiment(f, [bad])


@pytest.mark.slow
def test_changing_resources_does_not_change_the_experiment(tiny_grid, grid_file, tmp_path):
    import shutil

    local_out, _, overrides = tiny_grid
    out = tmp_path / "copy"
    shutil.copytree(local_out, out)
    resolved = read_experiment(grid_file, [*overrides, "grid.cpus_per_run=2"])
    # no --force needed, nothing redone: resources do not define the runs
    outcome = run_experiment(resolved, out, progress=False)
    assert outcome.ran == [] and outcome.done_before == 4
    assert yaml.safe_load((out / "experiment.yaml").read_text())["resources"]["cpus_per_run"] == 2


@pytest.mark.slow
def test_gpu_runs_need_gpus_per_run(tiny_grid, tmp_path):
    pytest.importorskip("ray", reason="Ray cannot be installed here (pip install 'medseg[ray]')")
    from medseg.experiments.ray_backend import RayBackend

    local_out, resolved, _ = tiny_grid
    job = make_job(expand(resolved)[0], tmp_path, local_out / "split.json")
    job.config = copy.deepcopy(job.config)
    job.config["train"].update(accelerator="gpu", devices=2)
    job.gpus = 1
    with pytest.raises(MedsegError, match="train.devices is 2 but grid.gpus_per_run is 1"):
        RayBackend()._check_resources([job])
