"""Cross-validation grids: fold runs, the fold column, growth by folds, the dry-run listing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medseg.cli import main
from medseg.errors import ConfigError
from medseg.experiments import read_experiment, run_experiment
from medseg.experiments import results as results_mod
from medseg.experiments.grid import expand



def test_fold_runs_are_planned_per_fold(grid_file, cv_overrides):
    resolved = read_experiment(grid_file, cv_overrides)
    specs = expand(resolved)
    assert [s.fold for s in specs] == [0, 1, 2, 3, 4]
    assert specs[3].rel_dir == "runs/pancreas/unet/none/repeat0/fold3"
    assert specs[3].config["data"]["folds"] == 5 and specs[3].config["data"]["fold"] == 3
    with pytest.raises(ConfigError, match="grid.run_folds"):
        read_experiment(grid_file, [*cv_overrides, "grid.run_folds=[5]"])


def test_bagls_grid_refuses_folds(grid_file, bagls_root, cache_dir):
    bagls = Path(__file__).resolve().parents[2] / "configs" / "cpu" / "bagls_unet.yaml"
    with pytest.raises(ConfigError, match="BAGLS has a fixed official test set"):
        read_experiment(grid_file, [f"base={bagls}", f"data.root={bagls_root}", "grid.regularizers=[none]",
                                    "grid.folds=3"])


@pytest.mark.slow
def test_cv_grid_tests_every_scan_once_and_grows_by_folds(grid_file, cv_overrides, tmp_path, capsys):
    out = tmp_path / "cv"
    first = read_experiment(grid_file, [*cv_overrides, "grid.run_folds=[0,1]"])
    o = run_experiment(first, out, progress=False)
    assert len(o.ran) == 2
    split = json.loads((out / "split.json").read_text())
    assert len(split["folds"]) == 5
    # more folds: only the new ones run, no --force
    every = read_experiment(grid_file, cv_overrides)
    assert main(["experiment", "--config", str(grid_file), "--out", str(out), "--dry-run",
                 *cv_overrides]) == 0
    text = capsys.readouterr().out
    assert "it grows: only the new runs will run" in text and "5-fold cross-validation over 5 scans" in text
    assert all(f"fold {f}: test {', '.join(split['folds'][f]['test'])}" in text for f in range(5))
    o = run_experiment(every, out, progress=False)
    assert o.done_before == 2 and len(o.ran) == 3
    rows = results_mod.read_results(out / "results.csv")
    assert sorted(r["fold"] for r in rows) == [0, 1, 2, 3, 4]  # one test scan per fold here
    assert sorted(r["case_id"] for r in rows) == sorted(split["cases"])  # every scan tested once
    for r in rows:
        run_split = json.loads((out / r["run_dir"] / "split.json").read_text())
        assert run_split["test"] == split["folds"][r["fold"]]["test"] == [r["case_id"]]
    # resume per (run, fold): a lost fold is redone alone
    results_mod.prune(out / "results.csv", lambda r: r["fold"] != 3)
    o = run_experiment(every, out, progress=False)
    assert o.ran == ["runs/pancreas/unet/none/repeat0/fold3"]
