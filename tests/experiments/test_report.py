"""``medseg report``: every file, and every number recomputed from results.csv (medseg.experiments.report)."""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import wilcoxon

from medseg.cli import main
from medseg.errors import MedsegError
from medseg.experiments import results as results_mod
from medseg.experiments.report import min_p, write_report


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def repeat_means(results: Path) -> dict[tuple, dict[int, tuple[float, float]]]:
    """(dataset, model, regularizer, params) → repeat → (mean DICE, mean IoU), computed here."""
    per_run = defaultdict(list)
    for r in read_csv(results):
        per_run[(r["dataset"], r["model"], r["regularizer"], r["params"], int(r["repeat"]))].append(r)
    out = defaultdict(dict)
    for (d, m, reg, p, rep), rows in per_run.items():
        dice = [float(r["dice"]) for r in rows if r["dice"] != "nan"]
        iou = [float(r["iou"]) for r in rows if r["iou"] != "nan"]
        out[(d, m, reg, p)][rep] = (sum(dice) / len(dice), sum(iou) / len(iou))
    return out


@pytest.mark.slow  # the tiny grid trains
def test_report_on_a_finished_grid(grid_copy, capsys):
    out, resolved, _ = grid_copy
    assert main(["coadapt", str(out), "--fractions", "0,0.5", "--draws", "1", "--no-progress"]) == 0
    assert main(["report", str(out)]) == 0
    rep = out / "report"
    for stem in ("boxplot_pancreas_dice", "boxplot_pancreas_iou", "qualitative_pancreas_unet",
                 "coadapt_pancreas"):
        for ext in ("png", "svg"):
            f = rep / f"{stem}.{ext}"
            assert f.is_file() and f.stat().st_size > 1000, f
    for name in ("report.md", "summary_pancreas.md", "summary_pancreas.csv", "summary.csv", "repeats.csv"):
        assert (rep / name).is_file(), name
    assert not list(rep.glob("k_ablation_*"))  # k was not swept here
    md = (rep / "report.md").read_text()
    for needle in ("](boxplot_pancreas_dice.png)", "](boxplot_pancreas_iou.png)",
                   "](qualitative_pancreas_unet.png)", "](coadapt_pancreas.png)", "Wilcoxon signed-rank",
                   "paired by repeat index", "split seed 0", "Aggregation", "seeds per repeat: [0, 1]"):
        assert needle in md, needle
    split = json.loads((out / "split.json").read_text())
    assert all(cid in md for cid in split["test"])

    # every summary number equals the mean/std over repeats of the per-repeat case means
    expected = repeat_means(out / "results.csv")
    summary = read_csv(rep / "summary_pancreas.csv")
    assert len(summary) == len(expected) == 2
    for row in summary:
        reps = expected[(row["dataset"], row["model"], row["regularizer"], row["params"])]
        dice = [reps[r][0] for r in sorted(reps)]
        iou = [reps[r][1] for r in sorted(reps)]
        assert int(row["n_repeats"]) == 2
        assert float(row["dice_mean"]) == pytest.approx(np.mean(dice), abs=1e-12)
        assert float(row["dice_std"]) == pytest.approx(np.std(dice, ddof=1), abs=1e-12)
        assert float(row["iou_mean"]) == pytest.approx(np.mean(iou), abs=1e-12)
        assert f"{float(row['dice_mean']):.4f} ± {float(row['dice_std']):.4f}" in md
    # a run's per-repeat mean is its own metrics.json test DICE (and HD95, NSD)
    for r in read_csv(rep / "repeats.csv"):
        m = json.loads((out / r["run_dir"] / "metrics.json").read_text())
        assert float(r["dice"]) == pytest.approx(m["dice_mean"], abs=1e-12)
        for metric in ("hd95", "nsd"):
            if m[f"{metric}_mean"] is not None:
                assert float(r[metric]) == pytest.approx(m[f"{metric}_mean"], abs=1e-9)
    # results.csv carries each case's boundary metrics and the run's best validation DICE
    results = read_csv(out / "results.csv")
    for run_dir in {r["run_dir"] for r in results}:
        cases = {c["case_id"]: c for c in read_csv(out / run_dir / "cases.csv")}
        logged = [float(x["val_dice"]) for x in read_csv(out / run_dir / "logs" / "metrics.csv") if x["val_dice"]]
        for r in (r for r in results if r["run_dir"] == run_dir):
            assert (r["hd95"], r["nsd"]) == (cases[r["case_id"]]["hd95"], cases[r["case_id"]]["nsd"])
            assert float(r["hd95"]) >= 0 and 0 <= float(r["nsd"]) <= 1
            assert float(r["best_val_dice"]) == pytest.approx(max(logged))
    for metric in ("hd95", "nsd"):
        assert (rep / f"boxplot_pancreas_{metric}.png").is_file() and f"](boxplot_pancreas_{metric}.png)" in md
    assert {"dice_delta", "dice_delta_ci_low", "hd95_delta_ci_high"} <= set(summary[0])
    assert "## Runs that did not converge" in md and (rep / "comparisons.csv").is_file()

    with pytest.raises(MedsegError, match="report exists"):
        write_report(out)
    assert main(["report", str(out), "--force", "--no-qualitative"]) == 0
    assert not (rep / "qualitative_pancreas_unet.png").exists()


def _synthetic_results(path: Path, repeats: int = 5) -> dict:
    """A results.csv with 5 repeats, 3 test cases, a k sweep; returns the per-repeat means."""
    rng = np.random.default_rng(0)
    methods = [("none", {}), ("heuristic", {}), ("dropout", {}),
               *[("heuristic", {"k": k}) for k in (0, 1, 3)]]
    truth = {}
    base = [rng.uniform(0.5, 0.8, 3) for _ in range(repeats)]
    for reg, params in methods:
        pj = json.dumps(params, sort_keys=True)
        for rep in range(repeats):
            slug = reg + "".join(f"_{k}={v}" for k, v in params.items())
            run = f"runs/pancreas/unet/{slug}/repeat{rep}"
            if reg == "none":
                dice = base[rep].copy()
            elif reg == "heuristic" and not params:
                dice = base[rep] + 0.05  # better in every repeat: the smallest p for n = 5
            else:
                dice = rng.uniform(0.5, 0.9, 3)
            if reg == "dropout" and rep == 2:
                dice[1] = float("nan")  # a case left out (both empty, empty_score null)
            rows = [{"dataset": "pancreas", "model": "unet", "regularizer": reg, "params": pj,
                     "repeat": rep, "fold": 0, "seed": 10 + rep, "case_id": f"C{i}", "dice": float(d),
                     "iou": float(d) / (2 - float(d)) if not math.isnan(d) else float("nan"),
                     "hd95": 10 * (1 - float(d)), "nsd": float(d), "best_val_dice": 0.7,
                     "run_dir": run} for i, d in enumerate(dice)]
            results_mod.append_run(path, rows)
            truth[(reg, pj, rep)] = float(np.nanmean(dice))
    return truth


@pytest.mark.slow
def test_wilcoxon_p_values_and_k_ablation_from_results(tmp_path):
    exp = tmp_path / "exp"
    truth = _synthetic_results(exp / "results.csv")
    write_report(exp, qualitative=False)
    rep = exp / "report"
    summary = {(r["regularizer"], r["params"]): r for r in read_csv(rep / "summary_pancreas.csv")}
    assert len(summary) == 6

    def series(reg, pj):
        return [truth[(reg, pj, r)] for r in range(5)]

    base, hd = series("none", "{}"), series("heuristic", "{}")
    drop = series("dropout", "{}")
    assert float(summary[("dropout", "{}")]["dice_mean"]) == pytest.approx(np.mean(drop), abs=1e-12)
    assert float(summary[("dropout", "{}")]["dice_p_vs_none"]) == pytest.approx(
        wilcoxon(drop, base).pvalue, abs=1e-12)
    assert float(summary[("dropout", "{}")]["dice_p_vs_heuristic"]) == pytest.approx(
        wilcoxon(drop, hd).pvalue, abs=1e-12)
    assert float(summary[("heuristic", "{}")]["dice_p_vs_none"]) == pytest.approx(0.0625, abs=1e-12)
    assert summary[("none", "{}")]["dice_p_vs_none"] == "nan"  # the reference itself
    assert min_p(5) == 0.0625
    md = (rep / "report.md").read_text()
    assert "0.0625 for n = 5" in md and "can reach p < 0.05" in md
    assert "Heuristic Dropout against the baseline" in md
    delta = 100 * (np.mean(hd) - np.mean(base))
    assert f"DICE {delta:+.2f} points (p = 0.0625, n = 5)" in md
    # the k ablation: heuristic with k = 0, 1, 3 (the defaults-only run has no 'k' parameter)
    for ext in ("png", "svg"):
        assert (rep / f"k_ablation_pancreas_unet_heuristic.{ext}").is_file()
    assert "k ablation" in md
    for k in (0, 1, 3):
        ks = series("heuristic", json.dumps({"k": k}))
        assert f"| {k} | 5 | {np.mean(ks):.4f} ± {np.std(ks, ddof=1):.4f} |" in md
    assert "(pancreas, 2, 12)" in md  # seeds are read from results.csv


def test_report_needs_results(tmp_path):
    with pytest.raises(MedsegError, match="no results yet"):
        write_report(tmp_path)
