"""grid.tune (an equal tuning budget, chosen on validation) and grid.train_sizes (a learning curve)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import yaml

from medseg.cli import main
from medseg.errors import ConfigError
from medseg.experiments import read_experiment, run_experiment
from medseg.experiments import results as results_mod
from medseg.experiments.grid import expand
from medseg.experiments.tuning import RunScore, run_scores, select, tuned_rows

BASE = Path(__file__).resolve().parents[2] / "configs" / "cpu" / "pancreas_unet.yaml"


def resolved(grid: dict, *overrides: str) -> dict:
    return read_experiment(None, overrides, raw={"base": str(BASE), "grid": grid})


# --------------------------------------------------------------------------- the grid


def test_tune_expands_every_method_into_the_same_number_of_candidates():
    r = resolved({"regularizers": ["none", "heuristic", "dropout", "dropblock"], "tune": True, "repeats": 2})
    specs = expand(r)
    per_method = {}
    for s in specs:
        per_method.setdefault(s.regularizer, set()).add(s.params_json)
    assert {k: len(v) for k, v in per_method.items()} == {"none": 1, "heuristic": 3, "dropout": 3, "dropblock": 3}
    assert len(specs) == 2 * 10
    assert "runs/pancreas/unet/dropout_p=0.2/repeat1" in {s.rel_dir for s in specs}
    # every candidate's config carries it
    chosen = {s.config["regularizer"]["p"] for s in specs if s.regularizer == "dropout"}
    assert chosen == {0.05, 0.1, 0.2}


def test_tune_values_override_a_methods_candidates():
    r = resolved({"regularizers": ["none", "dropout", "heuristic"], "tune": True, "repeats": 1,
                  "tune_values": {"dropout": {"p": [0.05, 0.1, 0.2, 0.3]},
                                  "heuristic": {"rate": [0.1, 0.2], "k": [1, 2]}}})
    assert r["grid"]["tune"]["dropout"] == [{"p": v} for v in (0.05, 0.1, 0.2, 0.3)]
    assert len(r["grid"]["tune"]["heuristic"]) == 4  # every combination
    # the command-line form
    r = resolved({"regularizers": ["none", "dropout"], "tune": True}, "grid.tune_values.dropout.p=[0.1,0.3]")
    assert r["grid"]["tune"] == {"dropout": [{"p": 0.1}, {"p": 0.3}]}


@pytest.mark.parametrize("grid, match", [
    ({"regularizers": ["none", "dropout", "heuristic"], "tune": True,
      "tune_values": {"dropout": {"p": [0.1, 0.2]}}}, "same number of candidates"),
    ({"regularizers": ["none", "dropout"], "tune_values": {"dropout": {"p": [0.1]}}}, "needs grid.tune: true"),
    ({"regularizers": ["none", "dropout"], "tune": "yes"}, "grid.tune' must be true or false"),
    ({"regularizers": ["none", "dropout"], "tune": True, "tune_values": {"none": {"p": [0.1]}}}, "nothing to tune"),
    ({"regularizers": ["none", "dropout"], "tune": True, "tune_values": {"wcd": {"keep_ratio": [0.9]}}},
     "not in grid.regularizers"),
    ({"regularizers": ["none", {"name": "dropout", "p": 0.1}], "tune": True}, "cannot also be fixed"),
    ({"regularizers": ["none", "dropout"], "tune": True, "sweep": {"regularizer.p": [0.1]}}, "sweep it or tune it"),
    ({"regularizers": ["none", "sbdrop"], "tune": True}, "has no default candidates"),
    ({"regularizers": ["none", "dropout"], "tune": True, "tune_values": {"dropout": {"p": [0.1, 0.1]}}},
     "candidate twice"),
    ({"regularizers": ["none", "dropout"], "tune": True, "tune_values": {"dropout": {"p": [1.5]}}},
     "grid.tune_values.dropout': candidate {'p': 1.5}"),
    ({"regularizers": ["none", "dropout"], "tune": True, "tune_values": {"dropout": {"q": [0.1]}}},
     "grid.tune_values.dropout.q': 'dropout' has no parameter 'q'"),
    ({"regularizers": ["none", "dropout"], "tune": True, "tune_values": {"dropout": {"p": [0.1], 1: [2]}}},
     "grid.tune_values.dropout.1'"),
    ({"regularizers": ["none", "heuristic"], "tune": True, "tune_values": {"heuristic": {"k": [1, 1.0]}}},
     "candidate twice"),
    ({"regularizers": ["none"], "train_sizes": [2, 2]}, "lists a size twice"),
    ({"regularizers": ["none"], "train_sizes": [0]}, "integers >= 1"),
    ({"regularizers": ["none"], "train_sizes": [9]}, "grid.train_sizes': 9 training scans asked for, but the "
                                                      "pancreas split has 8"),
    ({"regularizers": ["none"], "train_sizes": [99999999999999999999]}, "grid.train_sizes'"),
    ({"regularizers": ["none"], "train_sizes": [2], "sweep": {"data.train_size": [4]}}, "not both"),
])
def test_bad_tuning_and_size_keys_are_refused_naming_the_key(grid, match):
    with pytest.raises(ConfigError, match=match):
        resolved(grid)


def test_train_sizes_are_a_sweep_of_the_training_subset_size():
    r = resolved({"regularizers": ["none", "heuristic"], "train_sizes": [8, 2, 4], "repeats": 1})
    specs = expand(r)
    assert r["grid"]["train_sizes"] == [2, 4, 8]
    assert [(s.regularizer, s.config["data"]["train_size"]) for s in specs] == [
        ("none", 2), ("none", 4), ("none", 8), ("heuristic", 2), ("heuristic", 4), ("heuristic", 8)]
    assert specs[0].rel_dir == "runs/pancreas/unet/none_data.train_size=2/repeat0"
    # an experiment without the new keys resolves exactly as before (its experiment.yaml unchanged)
    plain = resolved({"regularizers": ["none"]})
    assert "train_sizes" not in plain["grid"] and "tune" not in plain["grid"]


def test_training_subsets_are_nested_and_keep_validation_and_test(pancreas_root, cache_dir):
    from medseg.config import load_config
    from medseg.data.splits import resolve_split, train_subset

    ids = [f"case{i}" for i in range(8)]
    subsets = [train_subset(ids, n, seed=3) for n in (1, 2, 4, 8)]
    for small, big in zip(subsets, subsets[1:]):
        assert set(small) < set(big)
    assert sorted(subsets[-1]) == ids and train_subset(ids, 4, seed=3) == subsets[2]
    assert train_subset(ids, 4, seed=4) != subsets[2]  # seeded: another split seed, another subset
    base = [f"data.root={pancreas_root}", f"data.cache_dir={cache_dir}", "data.num_cases=5", "data.split=[3,1,1]"]
    full = resolve_split(load_config(BASE, base)["data"])
    views = [resolve_split(load_config(BASE, [*base, f"data.train_size={n}"])["data"]) for n in (1, 2, 3)]
    for v in views:
        assert v["val"] == full["val"] and v["test"] == full["test"] and set(v["train"]) <= set(full["train"])
    assert set(views[0]["train"]) < set(views[1]["train"]) < set(views[2]["train"]) == set(full["train"])
    with pytest.raises(ConfigError, match="data.train_size' is 4 but the split has 3"):
        load_config(BASE, [*base, "data.train_size=4"])


# --------------------------------------------------------------------------- the choice


def score(run: str, reg: str, params: dict, repeat: int, val: float, fold: int = 0) -> RunScore:
    return RunScore(run, "pancreas", "unet", reg, json.dumps(params, sort_keys=True), repeat, fold, val)


TUNE = {"dropout": [{"p": 0.05}, {"p": 0.1}, {"p": 0.2}]}


def test_choice_is_made_on_validation_even_where_test_disagrees():
    # per repeat: validation ranks p=0.2 first, test ranks p=0.05 first
    rows = []
    for repeat in (0, 1):
        for p, val, test in ((0.05, 0.60, 0.90), (0.1, 0.70, 0.80), (0.2, 0.80, 0.50)):
            for case in ("a", "b"):
                rows.append({"dataset": "pancreas", "model": "unet", "regularizer": "dropout",
                             "params": json.dumps({"p": p}), "repeat": repeat, "fold": 0, "seed": repeat,
                             "case_id": case, "dice": test, "iou": test, "hd95": 1.0, "nsd": test,
                             "best_val_dice": val, "run_dir": f"dropout_p={p}/repeat{repeat}"})
    choices = select(run_scores(rows), TUNE)
    assert [(c.repeat, c.chosen) for c in choices] == [(0, '{"p": 0.2}'), (1, '{"p": 0.2}')]
    # the choice cannot depend on test metrics: poisoning them changes nothing
    poisoned = [{**r, "dice": -r["dice"], "iou": math.nan, "nsd": 0.0} for r in rows]
    assert select(run_scores(poisoned), TUNE) == choices
    # the chosen runs' rows are the tuned method's rows, relabelled
    picked = tuned_rows(rows, TUNE, choices)
    assert {r["run_dir"] for r in picked} == {"dropout_p=0.2/repeat0", "dropout_p=0.2/repeat1"}
    assert {r["params"] for r in picked} == {'{"tuned": "p"}'} and {r["dice"] for r in picked} == {0.5}


def test_choice_per_repeat_and_fold_ties_and_nan_go_to_the_earlier_candidate():
    runs = [score("a", "dropout", {"p": 0.05}, 0, 0.7), score("b", "dropout", {"p": 0.1}, 0, 0.7),
            score("c", "dropout", {"p": 0.2}, 0, math.nan),
            score("d", "dropout", {"p": 0.05}, 0, 0.1, fold=1), score("e", "dropout", {"p": 0.2}, 0, 0.3, fold=1),
            score("f", "dropout", {"p": 0.3}, 0, 0.99),  # not a candidate: never chosen
            score("g", "none", {}, 0, 0.99)]
    choices = select(runs, TUNE)
    assert [(c.fold, c.run_dir, c.n_candidates) for c in choices] == [(0, "a", 3), (1, "e", 2)]


def test_choice_is_per_training_set_size():
    runs = [score("a2", "dropout", {"p": 0.05, "data.train_size": 2}, 0, 0.9),
            score("b2", "dropout", {"p": 0.1, "data.train_size": 2}, 0, 0.5),
            score("a4", "dropout", {"p": 0.05, "data.train_size": 4}, 0, 0.5),
            score("b4", "dropout", {"p": 0.1, "data.train_size": 4}, 0, 0.9)]
    choices = select(runs, TUNE)
    assert {c.rest: c.run_dir for c in choices} == {'{"data.train_size": 2}': "a2", '{"data.train_size": 4}': "b4"}
    assert choices[0].method == 'dropout (data.train_size=2, tuned=p)'


# --------------------------------------------------------------------------- a tiny experiment


@pytest.mark.slow
def test_tuned_learning_curve_grows_by_a_size_and_a_candidate(tiny_overrides, tmp_path):
    overrides = [*tiny_overrides, "grid.regularizers=[none,dropout]", "grid.repeats=1",
                 "grid.tune=true"]
    out = tmp_path / "exp"

    def run(*extra: str) -> list[str]:
        return run_experiment(read_experiment(None, [*overrides, *extra], raw={"base": str(BASE)}), out,
                              progress=False).ran

    first = run("grid.train_sizes=[1]", "grid.tune_values.dropout.p=[0.1]")
    assert sorted(first) == ["runs/pancreas/unet/dropout_data.train_size=1_p=0.1/repeat0",
                             "runs/pancreas/unet/none_data.train_size=1/repeat0"]
    # each run trained on its subset; validation and test are the grid's
    split = json.loads((out / "split.json").read_text())
    run_split = json.loads((out / first[0] / "split.json").read_text())
    assert len(run_split["train"]) == 1 and set(run_split["train"]) < set(split["train"])
    assert (run_split["val"], run_split["test"]) == (split["val"], split["test"])
    grown = run("grid.train_sizes=[1,2]", "grid.tune_values.dropout.p=[0.1]")  # a size: only its runs
    assert sorted(grown) == ["runs/pancreas/unet/dropout_data.train_size=2_p=0.1/repeat0",
                             "runs/pancreas/unet/none_data.train_size=2/repeat0"]
    grown = run("grid.train_sizes=[1,2]", "grid.tune_values.dropout.p=[0.1,0.3]")  # a candidate: only its runs
    assert sorted(grown) == ["runs/pancreas/unet/dropout_data.train_size=1_p=0.3/repeat0",
                             "runs/pancreas/unet/dropout_data.train_size=2_p=0.3/repeat0"]
    assert len(results_mod.finished_runs(out / "results.csv")) == 6

    assert main(["report", str(out), "--no-qualitative"]) == 0
    report = out / "report"
    text = (report / "report.md").read_text()
    assert "## Tuned comparison, equal budget (pancreas)" in text and "**2 candidate(s)**" in text
    assert "## Learning curve (pancreas)" in text and (report / "learning_curve_pancreas_unet.png").is_file()
    with open(report / "tuning_choices.csv") as fh:
        choices = list(csv.DictReader(fh))
    assert len(choices) == 2  # per size one choice of dropout's candidate (one repeat)
    best = {}
    for r in results_mod.read_results(out / "results.csv"):
        if r["regularizer"] == "dropout":
            size = json.loads(r["params"])["data.train_size"]
            best.setdefault(size, {})[r["run_dir"]] = r["best_val_dice"]
    for c in choices:
        runs = best[int(json.loads(c["method"].split("data.train_size=")[1].split(",")[0]))]
        assert c["run_dir"] == max(runs, key=lambda d: (runs[d], "p=0.1" in d))
    with open(report / "learning_curve_pancreas.csv") as fh:
        points = list(csv.DictReader(fh))
    assert {(p["method"], p["train_size"]) for p in points} == {
        ("none", "1"), ("none", "2"), ("dropout (tuned=p)", "1"), ("dropout (tuned=p)", "2")}


@pytest.mark.slow
def test_dry_run_lists_candidates_and_sizes(tiny_overrides, tmp_path, capsys):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(yaml.safe_dump({"base": str(BASE)}))
    overrides = [*tiny_overrides, "grid.regularizers=[none,dropout]", "grid.repeats=1",
                 "grid.tune=true", "grid.tune_values.dropout.p=[0.1,0.2]", "grid.train_sizes=[1,2]"]
    out = tmp_path / "exp"
    assert main(["experiment", "--config", str(cfg), "--out", str(out), "--dry-run", *overrides]) == 0
    text = capsys.readouterr().out
    assert "6 runs: 0 done, 6 to do" in text and "dropout_data.train_size=2_p=0.2/repeat0" in text
    assert "estimate" in text and not out.exists()


def test_a_size_larger_than_a_given_split_files_training_scans_is_refused_before_any_run(
        tiny_overrides, tmp_path):
    from medseg.data.splits import make_split, save_split
    from medseg.config import load_config

    cfg = load_config(BASE, tiny_overrides[:5] + ["data.split=[2,1,2]"])
    split_file = tmp_path / "mine.json"
    save_split(make_split(cfg["data"]), split_file)
    out = tmp_path / "exp"
    r = read_experiment(None, [*tiny_overrides, f"data.split_file={split_file}", "grid.regularizers=[none]",
                               "grid.repeats=1", "grid.train_sizes=[1,3]"], raw={"base": str(BASE)})
    with pytest.raises(ConfigError, match="grid.train_sizes': 3 training scans asked for, but split.json has 2"):
        run_experiment(r, out, progress=False)
    assert not out.exists()


@pytest.mark.slow
def test_growing_by_a_size_keeps_the_split_file(tiny_overrides, tmp_path):
    overrides = [*tiny_overrides, "grid.regularizers=[none]", "grid.repeats=1", "train.limit_train_batches=1"]
    out = tmp_path / "exp"
    run_experiment(read_experiment(None, [*overrides, "grid.train_sizes=[1]"], raw={"base": str(BASE)}), out,
                   progress=False)
    before = (out / "split.json").stat()
    ran = run_experiment(read_experiment(None, [*overrides, "grid.train_sizes=[1,2]"], raw={"base": str(BASE)}),
                         out, progress=False).ran
    assert ran == ["runs/pancreas/unet/none_data.train_size=2/repeat0"]
    after = (out / "split.json").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # never redrawn


def test_a_config_key_added_since_with_its_null_default_is_no_difference():
    from medseg.experiments.grid import first_difference

    old = {"datasets": {"pancreas": {"data": {"size": [64, 64]}, "train": {"epochs": 2}}}}
    new = {"datasets": {"pancreas": {"data": {"size": [64, 64], "train_size": None},
                                     "train": {"epochs": 2, "samples_per_epoch": None}}}}
    assert first_difference(old, new) is None
    new["datasets"]["pancreas"]["data"]["train_size"] = 2
    assert first_difference(old, new) == ("datasets.pancreas.data.train_size", "<absent>", 2)


def test_train_sizes_and_a_base_train_size_are_not_both_taken():
    with pytest.raises(ConfigError, match="data.train_size \\(2\\) would be ignored"):
        read_experiment(None, ["grid.train_sizes=[1]", "data.train_size=2"], raw={"base": str(BASE)})
    with pytest.raises(ConfigError, match="train.samples_per_epoch"):
        read_experiment(None, ["train.samples_per_epoch=99999999999999999999"], raw={"base": str(BASE)})


@pytest.mark.parametrize("text", ["grid: {tune: maybe}", "grid: {tune: {dropout: 5}}", "[1, 2, 3]", "grid: 7"])
def test_report_of_a_damaged_experiment_file_is_one_line(tmp_path, capsys, text):
    exp = tmp_path / "exp"
    exp.mkdir()
    row = {c: "0" for c in results_mod.COLUMNS}
    row.update(dataset="pancreas", model="unet", regularizer="none", params="{}", case_id="a", dice="0.5",
               iou="0.4", hd95="1", nsd="0.5", best_val_dice="0.6", run_dir="runs/x")
    (exp / "results.csv").write_text(",".join(results_mod.COLUMNS) + "\n" + ",".join(row[c] for c in results_mod.COLUMNS)
                                     + "\n")
    (exp / "experiment.yaml").write_text(text)
    assert main(["report", str(exp), "--no-qualitative"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().startswith(f"medseg: error: {exp / 'experiment.yaml'}")
    assert not (exp / "report").exists()
