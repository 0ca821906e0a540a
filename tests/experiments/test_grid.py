"""Experiment configs, grid expansion, the resumable runner and results.csv (medseg.experiments)."""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from pathlib import Path

import pytest
import yaml

from medseg.cli import main
from medseg.errors import ConfigError, MedsegError
from medseg.experiments import expand, read_experiment, run_experiment
from medseg.experiments import results as results_mod
from medseg.experiments.runner import plan_status

REPO = Path(__file__).resolve().parents[2]
BASE = "configs/cpu/pancreas_unet.yaml"


def write(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def rows_of(out: Path) -> list[dict]:
    with open(out / "results.csv", newline="") as fh:
        return list(csv.DictReader(fh))


# --------------------------------------------------------------------------- schema


def test_schema_defaults_overrides_and_folders(tmp_path):
    f = write(tmp_path / "e.yaml", {"base": str(REPO / BASE), "train": {"epochs": 3},
                                     "grid": {"regularizers": ["none", {"name": "dropout", "p": 0.2}]}})
    r = read_experiment(f)
    specs = expand(r)
    assert r["grid"]["repeats"] == 5 and r["seeds"] == {"pancreas": [0, 1, 2, 3, 4]}
    assert len(specs) == 10
    # repeat-major order; the same seed for repeat r of every method
    assert [(s.regularizer, s.repeat, s.seed) for s in specs[:4]] == [
        ("none", 0, 0), ("dropout", 0, 0), ("none", 1, 1), ("dropout", 1, 1)]
    assert specs[1].rel_dir == "runs/pancreas/unet/dropout_p=0.2/repeat0"
    assert specs[1].params == {"p": 0.2} and specs[1].config["regularizer"] == {"name": "dropout", "p": 0.2}
    assert all(s.config["train"]["epochs"] == 3 for s in specs)
    # command-line overrides reach grid and train keys alike
    r2 = read_experiment(f, ["grid.regularizers=[none,heuristic]", "grid.repeats=2", "train.epochs=1",
                             "grid.models=[unet,attention_unet]", "grid.seeds=[7,9,11]"])
    specs2 = expand(r2)
    assert len(specs2) == 2 * 2 * 2
    assert {s.config["train"]["epochs"] for s in specs2} == {1}
    assert {s.model for s in specs2} == {"unet", "attention_unet"}
    assert r2["seeds"]["pancreas"] == [7, 9] and {s.seed for s in specs2 if s.repeat == 1} == {9}


def test_sweep_applies_to_regularizers_with_that_parameter(tmp_path):
    f = write(tmp_path / "e.yaml", {"base": str(REPO / BASE),
                                     "grid": {"regularizers": ["none", "heuristic"], "repeats": 1}})
    r = read_experiment(f, ["grid.sweep.regularizer.k=[0,3]", "grid.sweep.train.lr=[0.001,0.01]"])
    assert r["grid"]["sweep"] == {"regularizer.k": [0, 3], "train.lr": [0.001, 0.01]}
    specs = expand(r)
    # none: 2 lr values; heuristic: 2 k × 2 lr
    assert Counter(s.regularizer for s in specs) == {"none": 2, "heuristic": 4}
    hd = [s for s in specs if s.regularizer == "heuristic"]
    assert {(s.config["regularizer"]["k"], s.config["train"]["lr"]) for s in hd} == {
        (0, 0.001), (0, 0.01), (3, 0.001), (3, 0.01)}
    assert {s.params_json for s in hd} >= {'{"k": 0, "train.lr": 0.001}'}
    assert len({s.rel_dir for s in specs}) == len(specs)


@pytest.mark.parametrize("data, overrides, match", [
    ({"grid": {"modelz": ["unet"]}}, [], "'grid.modelz' is unknown"),
    ({"gird": {}}, [], "'gird' is unknown"),
    ({}, ["grid.repeats=0"], "'grid.repeats'"),
    ({}, ["grid.seeds=[1,2]", "grid.repeats=3"], "'grid.seeds' has 2 seeds"),
    ({}, ["grid.sweep.seed=[1,2]"], "'grid.sweep.seed' cannot be swept"),
    ({}, ["grid.sweep.data.split=[[2,1,2]]"], "'grid.sweep.data.split' cannot be swept"),
    ({}, ["grid.sweep.regularizer.k=[1]"], "no regularizer of the grid has a parameter 'k'"),
    ({}, ["train.epoch=2"], "'train.epoch' is unknown"),
    ({}, ["grid.regularizers=[none,nosuch]"], "nosuch"),
    ({}, ["grid.regularizers=[none,none]"], "share the folder"),
    ({}, ["grid.models=[unet,resnet]"], "model.name"),
    ({}, ["grid.regularizers=[none,heuristic]", "regularizer.k=3"], "'regularizer.k' has no effect"),
    ({}, ["grid.models=[unet]", "model.name=unet"], "'model.name' has no effect"),
    ({"grid": {"datasets": [BASE, BASE]}}, [], "dataset 'pancreas' appears twice"),
])
def test_bad_experiment_configs_name_the_key(tmp_path, data, overrides, match):
    f = write(tmp_path / "e.yaml", {"base": str(REPO / BASE), **data})
    with pytest.raises(ConfigError, match=match):
        read_experiment(f, overrides)


def test_multi_dataset_grid(tmp_path, monkeypatch):
    from medseg.experiments.grid import split_file_name

    monkeypatch.chdir(REPO)
    f = write(tmp_path / "e.yaml", {"train": {"epochs": 2}, "grid": {
        "datasets": [BASE, "configs/cpu/bagls_unet.yaml"], "regularizers": ["none"], "repeats": 2}})
    r = read_experiment(f)
    specs = expand(r)
    assert [(s.dataset, s.repeat) for s in specs] == [("pancreas", 0), ("bagls", 0), ("pancreas", 1), ("bagls", 1)]
    assert specs[1].rel_dir == "runs/bagls/unet/none/repeat0"
    assert {s.config["train"]["epochs"] for s in specs} == {2}
    assert specs[1].config["data"]["dataset"] == "bagls"
    assert [split_file_name(r, d) for d in ("pancreas", "bagls")] == ["split_pancreas.json", "split_bagls.json"]


def test_base_path_relative_to_cwd_or_to_the_experiment_file(tmp_path, monkeypatch):
    inside = REPO / "configs" / "experiments" / "cpu" / "pancreas_comparison.yaml"
    monkeypatch.chdir(tmp_path)  # not the repository: found by walking up from the file
    assert read_experiment(inside)["source"]["base"]["pancreas"] == str(REPO / BASE)
    monkeypatch.chdir(REPO)
    f = write(tmp_path / "e.yaml", {"base": BASE})  # relative to the working directory
    assert read_experiment(f)["source"]["base"]["pancreas"] == str(REPO / BASE)
    write(tmp_path / "b.yaml", yaml.safe_load((REPO / BASE).read_text()))
    g = write(tmp_path / "g.yaml", {"base": "b.yaml"})  # next to the experiment file
    assert read_experiment(g)["source"]["base"]["pancreas"] == str(tmp_path / "b.yaml")
    with pytest.raises(ConfigError, match="experiment key 'base'.*nope.yaml"):
        read_experiment(write(tmp_path / "h.yaml", {"base": "nope.yaml"}))


def test_every_shipped_experiment_config_expands():
    expected = {"pancreas_comparison": ({"unet", "attention_unet"}, 8), "bagls_comparison": ({"unet", "unet3plus"}, 8),
                "k_ablation": ({"unet"}, 6)}
    for scale in ("paper", "cpu"):
        for name, (models, methods) in expected.items():
            r = read_experiment(REPO / "configs" / "experiments" / scale / f"{name}.yaml")
            specs = expand(r)
            assert r["grid"]["repeats"] == 5
            if not (scale == "cpu" and name == "pancreas_comparison"):
                assert {s.model for s in specs} == models
                assert len({s.method for s in specs}) == methods
            assert r["source"]["base"][specs[0].dataset].startswith(str(REPO / "configs" / scale))
    cpu = expand(read_experiment(REPO / "configs/experiments/cpu/pancreas_comparison.yaml"))
    methods = {s.regularizer for s in cpu}
    assert {s.model for s in cpu} == {"unet"} and {"none", "heuristic"} <= methods and len(methods) >= 6
    k = expand(read_experiment(REPO / "configs/experiments/paper/k_ablation.yaml"))
    assert sorted({s.config["regularizer"]["k"] for s in k}) == [0, 1, 2, 3, 4, 5]


# --------------------------------------------------------------------------- results.csv


def _row(run_dir: str, case: str, dice: float) -> dict:
    return {"dataset": "pancreas", "model": "unet", "regularizer": "none", "params": "{}", "repeat": 0,
            "fold": 0, "seed": 0, "case_id": case, "dice": dice, "iou": dice / 2, "hd95": 3.0, "nsd": 0.5,
            "best_val_dice": 0.6, "run_dir": run_dir}


def test_append_run_is_atomic_and_keeps_each_run_once(tmp_path, monkeypatch):
    path = tmp_path / "results.csv"
    results_mod.append_run(path, [_row("a", "c1", 0.5), _row("a", "c2", 0.25)])
    results_mod.append_run(path, [_row("b", "c1", 0.75), _row("b", "c2", float("nan"))])
    results_mod.append_run(path, [_row("a", "c1", 0.125), _row("a", "c2", 0.0625)])  # redone: replaces
    rows = results_mod.read_results(path)
    assert Counter(r["run_dir"] for r in rows) == {"a": 2, "b": 2}
    assert [r["dice"] for r in rows if r["run_dir"] == "a"] == [0.125, 0.0625]
    assert results_mod.finished_runs(path) == {"a", "b"}
    before = path.read_bytes()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the process dies just before the rename

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        results_mod.append_run(path, [_row("c", "c1", 0.5)])
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    (tmp_path / "bad.csv").write_text("dataset,model\npancreas,unet\n")
    with pytest.raises(MedsegError, match="bad.csv: not a medseg results file"):
        results_mod.read_results(tmp_path / "bad.csv")


# --------------------------------------------------------------------------- running


@pytest.mark.slow
def test_tiny_grid_layout_and_rows(tiny_grid):
    out, resolved, _ = tiny_grid
    split = json.loads((out / "split.json").read_text())
    rows = rows_of(out)
    assert list(rows[0]) == results_mod.COLUMNS
    runs = Counter(r["run_dir"] for r in rows)
    assert len(runs) == 4 and set(runs.values()) == {len(split["test"])}
    for s in expand(resolved):
        run = out / s.rel_dir
        assert (run / "checkpoints" / "best.ckpt").is_file()
        # every run used the grid's split, and its rows are its cases.csv
        assert json.loads((run / "split.json").read_text())["test"] == split["test"]
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        assert cfg["data"]["split_file"] == str((out / "split.json").resolve()) and cfg["seed"] == s.seed
        with open(run / "cases.csv") as fh:
            cases = {c["case_id"]: c["dice"] for c in csv.DictReader(fh)}
        mine = [r for r in rows if r["run_dir"] == s.rel_dir]
        assert {r["case_id"]: r["dice"] for r in mine} == cases
        assert {(r["regularizer"], r["params"], r["repeat"], r["seed"]) for r in mine} == {
            (s.regularizer, s.params_json, str(s.repeat), str(s.seed))}
    assert yaml.safe_load((out / "experiment.yaml").read_text())["seeds"] == {"pancreas": [0, 1]}


@pytest.mark.slow
def test_rerun_does_only_the_missing_runs(grid_copy):
    out, resolved, _ = grid_copy
    specs = expand(resolved)
    a, b, c, d = (s.rel_dir for s in specs)
    untouched = [r for r in rows_of(out) if r["run_dir"] == d]
    # a: rows lost; b: folder and rows gone; c: killed mid-run (partial folder, no rows)
    results_mod.prune(out / "results.csv", lambda r: r["run_dir"] not in (a, b, c))
    import shutil

    shutil.rmtree(out / b)
    for name in ("metrics.json", "cases.csv", "checkpoints/best.ckpt"):
        (out / c / name).unlink()
    assert [done for _, done in plan_status(resolved, out)] == [False, False, False, True]
    outcome = run_experiment(resolved, out, progress=False)
    assert (outcome.total, outcome.done_before, outcome.remaining) == (4, 1, 0)
    assert outcome.ran == [a, b, c]
    rows = rows_of(out)
    assert Counter(r["run_dir"] for r in rows) == {x: 2 for x in (a, b, c, d)}
    assert len({(r["run_dir"], r["case_id"]) for r in rows}) == len(rows) == 8
    assert [r for r in rows if r["run_dir"] == d] == untouched
    again = run_experiment(resolved, out, progress=False)
    assert again.ran == [] and again.done_before == 4


@pytest.mark.slow
def test_crash_after_training_is_redone_and_max_runs_stops(tiny_grid, tmp_path, monkeypatch):
    import medseg.training.run as run_mod

    fixture_out, resolved, _ = tiny_grid
    specs = expand(resolved)
    out = tmp_path / "crash"
    real, calls = run_mod.train_run, []

    def killed_after_training(cfg, run_dir, **kwargs):
        calls.append(run_dir)
        summary = real(cfg, run_dir, **kwargs)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed after the run's files, before its rows
        return summary

    monkeypatch.setattr(run_mod, "train_run", killed_after_training)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(resolved, out, progress=False)
    monkeypatch.undo()
    assert results_mod.finished_runs(out / "results.csv") == {specs[0].rel_dir}
    assert (out / specs[1].rel_dir / "metrics.json").is_file()  # complete folder, yet not done
    o = run_experiment(resolved, out, progress=False, max_runs=1)
    assert o.ran == [specs[1].rel_dir] and (o.total, o.done_before, o.remaining) == (4, 1, 2)
    rows = rows_of(out)
    assert Counter(r["run_dir"] for r in rows) == {specs[0].rel_dir: 2, specs[1].rel_dir: 2}
    # redone from scratch with the same seed and split: the same scores as the fixture's run
    ref = {(r["run_dir"], r["case_id"]): r["dice"] for r in rows_of(fixture_out)}
    assert all(ref[(r["run_dir"], r["case_id"])] == r["dice"] for r in rows)


@pytest.mark.slow
def test_config_change_is_refused_unless_forced(grid_copy, grid_file):
    out, resolved, overrides = grid_copy
    changed = read_experiment(grid_file, [*overrides, "train.epochs=2"])
    with pytest.raises(MedsegError, match=r"the finished run runs/pancreas/unet/\w+/repeat0 would change: "
                       "'train.epochs' is 1 there, 2 now"):
        run_experiment(changed, out, progress=False)
    # dropping a finished method is a change too
    fewer = read_experiment(grid_file, [*overrides, "grid.regularizers=[none]"])
    with pytest.raises(MedsegError, match="the finished run runs/pancreas/unet/heuristic/repeat0 is not in the new grid"):
        run_experiment(fewer, out, progress=False)
    # more repeats grow the experiment without --force: finished runs keep their rows
    more = read_experiment(grid_file, [*overrides, "grid.repeats=3"])
    o = run_experiment(more, out, progress=False, max_runs=0)
    assert (o.total, o.done_before, o.ran, o.remaining) == (6, 4, [], 2)
    assert yaml.safe_load((out / "experiment.yaml").read_text())["grid"]["repeats"] == 3
    # ... and so does a new method (with its parameters) on top of that
    wider = read_experiment(grid_file, [*overrides, "grid.repeats=3",
                                        "grid.regularizers=[none,heuristic,{name: dropout, p: 0.2}]"])
    o = run_experiment(wider, out, progress=False, max_runs=0)
    assert (o.total, o.done_before, o.remaining) == (9, 4, 5)
    # changed training, forced: every finished run's config changed → its rows go
    o = run_experiment(changed, out, progress=False, force=True, max_runs=0)
    assert (o.total, o.done_before) == (4, 0)
    assert rows_of(out) == []
    assert yaml.safe_load((out / "experiment.yaml").read_text())["datasets"]["pancreas"]["train"]["epochs"] == 2


@pytest.mark.slow
def test_cli_dry_run_lists_runs_without_writing(tiny_grid, tmp_path, capsys):
    out, resolved, overrides = tiny_grid
    cfg = resolved["source"]["config"]
    assert main(["experiment", "--config", cfg, "--out", str(out), "--dry-run", *overrides]) == 0
    text = capsys.readouterr().out
    assert text.count(" done ") == 4 and "4 runs: 4 done, 0 to do" in text and "estimate" in text
    assert main(["experiment", "--config", cfg, "--out", str(out), "--dry-run", *overrides,
                 "train.lr=0.01"]) == 0
    assert "note: " in (text := capsys.readouterr().out) and "'datasets.pancreas.train.lr'" in text
    fresh = tmp_path / "fresh"
    assert main(["experiment", "--config", cfg, "--out", str(fresh), "--dry-run", *overrides]) == 0
    text = capsys.readouterr().out
    assert "4 runs: 0 done, 4 to do" in text and "runs/pancreas/unet/heuristic/repeat1" in text
    assert not fresh.exists()
    assert main(["experiment", "--config", cfg, "--out", str(fresh), *overrides, "grid.bogus=1"]) == 2
    assert "medseg: error: experiment key 'grid.bogus' is unknown" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_run_resumes_and_stops_after_max_runs(grid_copy, capsys):
    out, resolved, overrides = grid_copy
    cfg = resolved["source"]["config"]
    last = expand(resolved)[-1].rel_dir
    results_mod.prune(out / "results.csv", lambda r: r["run_dir"] != last)
    args = ["experiment", "--config", cfg, "--out", str(out), "--no-progress", *overrides]
    assert main([*args, "--max-runs", "0"]) == 0
    assert "4 runs: 3 already done, 0 run now, 1 left" in capsys.readouterr().out
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "4 runs: 3 already done, 1 run now, 0 left" in text and f"medseg report {out}" in text
    assert len(results_mod.finished_runs(out / "results.csv")) == 4
