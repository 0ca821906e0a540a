"""``medseg report`` statistics: paired bootstrap CIs, Wilcoxon over cases and over repeats,
runs that did not converge (medseg.experiments.report.statistics), checked against direct
scipy calls on numbers computed here from results.csv. No training."""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.stats import bootstrap, wilcoxon

from medseg.cli import main
from medseg.experiments import results as results_mod
from medseg.experiments.report import bootstrap_ci, write_report
from medseg.experiments.report.statistics import Comparison
from medseg.experiments.report.tables import sentence

CASES = [f"S{i:02d}" for i in range(6)]
FOLDS = {0: CASES[:3], 1: CASES[3:]}           # 2-fold cross-validation over 6 scans
METHODS = {"none": 0.0, "heuristic": 0.03, "dropout": -0.01}


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def write_grid(exp: Path, repeats: int = 3, failed: dict | None = None) -> list[dict]:
    """results.csv of a 3-method, 2-fold, ``repeats``-repeat grid; ``failed`` maps
    (method, repeat, fold) → a best val DICE (default 0.6). Returns the rows written."""
    rng = np.random.default_rng(1)
    ease = {c: rng.uniform(0.4, 0.8) for c in CASES}   # some scans are harder than others
    written = []
    for reg, shift in METHODS.items():
        for rep in range(repeats):
            for fold, cases in FOLDS.items():
                run = f"runs/pancreas/unet/{reg}/repeat{rep}/fold{fold}"
                best = (failed or {}).get((reg, rep, fold), 0.6)
                rows = []
                for c in cases:
                    dice = float(np.clip(ease[c] + shift + rng.normal(0, 0.04), 0, 1))
                    rows.append({"dataset": "pancreas", "model": "unet", "regularizer": reg, "params": "{}",
                                 "repeat": rep, "fold": fold, "seed": rep, "case_id": c, "dice": dice,
                                 "iou": dice / (2 - dice), "hd95": float(30 * (1 - dice) + rng.uniform(0, 2)),
                                 "nsd": float(min(1.0, dice + 0.1)), "best_val_dice": best, "run_dir": run})
                results_mod.append_run(exp / "results.csv", rows)
                written += rows
    return written


def pairs(rows: list[dict], method: str, ref: str, metric: str) -> dict:
    """(case, repeat, fold) → (method value, reference value), computed here."""
    val = defaultdict(dict)
    for r in rows:
        val[r["regularizer"]][(r["case_id"], r["repeat"], r["fold"])] = r[metric]
    return {k: (val[method][k], val[ref][k]) for k in val[method] if k in val[ref]}


def comparison(rep: Path, method: str, ref: str, metric: str) -> dict:
    found = [r for r in read_csv(rep / "comparisons.csv")
             if (r["method"], r["reference"], r["metric"]) == (method, ref, metric)]
    assert len(found) == 1
    return found[0]


@pytest.mark.slow
def test_bootstrap_ci_is_scipys_percentile_bootstrap_of_the_paired_differences(tmp_path):
    exp = tmp_path / "exp"
    rows = write_grid(exp)
    write_report(exp, qualitative=False)
    rep = exp / "report"
    for metric in ("dice", "hd95"):
        p = pairs(rows, "heuristic", "none", metric)
        d = np.array([p[k][0] - p[k][1] for k in sorted(p)])  # pairs in (case, repeat, fold) order
        direct = bootstrap((d,), np.mean, n_resamples=9999, confidence_level=0.95, method="percentile",
                           rng=np.random.default_rng(0)).confidence_interval
        row = comparison(rep, "heuristic", "none", metric)
        assert int(row["n_pairs"]) == len(d) == 18       # 6 scans × 3 repeats
        assert float(row["delta"]) == pytest.approx(d.mean(), abs=1e-12)
        assert float(row["ci_low"]) == pytest.approx(direct.low, abs=1e-12)
        assert float(row["ci_high"]) == pytest.approx(direct.high, abs=1e-12)
        assert (row["n_resamples"], row["bootstrap_seed"]) == ("9999", "0")
        assert bootstrap_ci(d) == (pytest.approx(direct.low, abs=1e-12), pytest.approx(direct.high, abs=1e-12))
    summary = {r["method"]: r for r in read_csv(rep / "summary.csv")}
    row = comparison(rep, "dropout", "heuristic", "iou")
    assert float(summary["dropout"]["iou_delta_vs_heuristic"]) == pytest.approx(float(row["delta"]), abs=1e-12)
    assert float(summary["dropout"]["iou_delta_ci_low_vs_heuristic"]) == pytest.approx(float(row["ci_low"]), abs=1e-12)
    row = comparison(rep, "heuristic", "none", "nsd")
    assert float(summary["heuristic"]["nsd_delta_ci_high"]) == pytest.approx(float(row["ci_high"]), abs=1e-12)
    assert summary["none"]["dice_delta"] == "nan"       # the reference itself


def test_degenerate_and_tiny_bootstraps():
    assert bootstrap_ci([0.2, 0.2, 0.2]) == (0.2, 0.2)    # every resample has the same mean
    assert all(math.isnan(v) for v in bootstrap_ci([0.2]))


@pytest.mark.slow
def test_wilcoxon_over_cases_and_over_repeats(tmp_path):
    exp = tmp_path / "exp"
    rows = write_grid(exp)
    write_report(exp, qualitative=False)
    p = pairs(rows, "dropout", "none", "dice")
    by_case = defaultdict(lambda: ([], []))
    by_repeat = defaultdict(lambda: ([], []))
    for (case, repeat, _), (a, b) in p.items():
        by_case[case][0].append(a)
        by_case[case][1].append(b)
        by_repeat[repeat][0].append(a)
        by_repeat[repeat][1].append(b)
    case_a = [np.mean(by_case[c][0]) for c in sorted(by_case)]
    case_b = [np.mean(by_case[c][1]) for c in sorted(by_case)]
    rep_a = [np.mean(by_repeat[r][0]) for r in sorted(by_repeat)]   # mean over both folds' cases
    rep_b = [np.mean(by_repeat[r][1]) for r in sorted(by_repeat)]
    row = comparison(exp / "report", "dropout", "none", "dice")
    assert (int(row["n_cases"]), int(row["n_repeats"])) == (6, 3)
    assert float(row["p_cases"]) == pytest.approx(wilcoxon(case_a, case_b).pvalue, abs=1e-12)
    assert float(row["p_repeats"]) == pytest.approx(wilcoxon(rep_a, rep_b).pvalue, abs=1e-12)
    assert float(row["min_p_cases"]) == 2 / 2 ** 6 and float(row["min_p_repeats"]) == 0.25
    summary = {r["method"]: r for r in read_csv(exp / "report" / "summary.csv")}
    assert float(summary["dropout"]["dice_p_vs_none"]) == pytest.approx(float(row["p_repeats"]), abs=1e-12)
    md = (exp / "report" / "report.md").read_text()
    assert "over 6 test cases: p = " in md and "(smallest attainable 0.0312)" in md
    assert "over 3 repeats: p = " in md and "(smallest attainable 0.2500)" in md


def _comparison(metric: str, delta: float, low: float, high: float) -> Comparison:
    return Comparison("pancreas", "unet", "heuristic", "none", "none", metric, 24, delta, low, high,
                      12, 0.03, 2, 0.5)


def test_one_plain_sentence_per_comparison_with_the_metric_direction():
    text = sentence(_comparison("dice", 0.02, -0.01, 0.05))
    assert "no evidence of a difference (the CI spans 0)" in text and "higher is better" in text
    assert "over 12 test cases: p = 0.0300" in text and "over 2 repeats: p = 0.5000 (smallest attainable 0.5000)" in text
    better = sentence(_comparison("hd95", -2.5, -4.0, -1.0))
    assert "lower is better" in better and "-2.5000 mm" in better and "heuristic is better than none" in better
    worse = sentence(_comparison("hd95", 2.5, 1.0, 4.0))
    assert "heuristic is worse than none" in worse
    assert "heuristic is better than none" in sentence(_comparison("nsd", 0.1, 0.05, 0.15))


@pytest.mark.slow
def test_runs_that_did_not_converge_are_listed_marked_and_kept(tmp_path):
    exp = tmp_path / "exp"
    failed = {("none", 1, 0): 0.0, ("heuristic", 2, 1): 0.05, ("dropout", 0, 0): 0.15}
    rows = write_grid(exp, failed=failed)
    (exp / "experiment.yaml").write_text(yaml.safe_dump({"report": {"failed_below": 0.1}}))
    write_report(exp, qualitative=False)
    rep = exp / "report"
    md = (rep / "report.md").read_text()
    assert "## Runs that did not converge" in md and "2 of 18 run(s) stayed below best validation DICE 0.1" in md
    assert "`runs/pancreas/unet/none/repeat1/fold0`" in md and "`runs/pancreas/unet/heuristic/repeat2/fold1`" in md
    assert "dropout/repeat0/fold0`" not in md.split("## Runs that did not converge")[1].split("##")[0]
    assert "without failed runs" in md and "× = a repeat with a run" not in md  # the note is in the figure
    runs = {r["run_dir"]: r for r in read_csv(rep / "runs.csv")}
    assert runs["runs/pancreas/unet/none/repeat1/fold0"]["failed"] == "True"
    assert sum(r["failed"] == "True" for r in runs.values()) == 2

    def repeat_means(method: str, skip: set) -> list[float]:
        out = []
        for r in range(3):
            vals = [x["dice"] for x in rows if x["regularizer"] == method and x["repeat"] == r
                    and (method, r, x["fold"]) not in skip]
            if vals:
                out.append(np.mean(vals))
        return out

    summary = {r["method"]: r for r in read_csv(rep / "summary.csv")}
    bad = {k for k, v in failed.items() if v < 0.1}
    for method in METHODS:
        every, kept = repeat_means(method, set()), repeat_means(method, bad)
        assert float(summary[method]["dice_mean"]) == pytest.approx(np.mean(every), abs=1e-12)
        assert float(summary[method]["dice_mean_without_failed"]) == pytest.approx(np.mean(kept), abs=1e-12)
        assert float(summary[method]["dice_std_without_failed"]) == pytest.approx(np.std(kept, ddof=1), abs=1e-12)
    assert summary["none"]["failed_runs"] == "1" and summary["dropout"]["failed_runs"] == "0"
    repeats = {(r["method"], r["repeat"]): r for r in read_csv(rep / "repeats.csv")}
    assert repeats[("none", "1")]["failed"] == "1" and repeats[("none", "0")]["failed"] == "0"

    # --failed-below overrides the experiment's report.failed_below
    assert main(["report", str(exp), "--force", "--no-qualitative", "--failed-below", "0.2"]) == 0
    md = (rep / "report.md").read_text()
    assert "3 of 18 run(s) stayed below best validation DICE 0.2" in md
    assert float(read_csv(rep / "summary.csv")[0]["dice_mean"]) == float(summary["none"]["dice_mean"])


@pytest.mark.slow
def test_best_val_dice_from_the_run_log_where_results_lack_it(tmp_path):
    exp = tmp_path / "exp"
    write_grid(exp, repeats=2)
    text = (exp / "results.csv").read_text().splitlines()
    header = text[0].split(",")
    i = header.index("best_val_dice")
    old = [",".join(c for j, c in enumerate(line.split(",")) if j != i) for line in text]  # an older file
    (exp / "results.csv").write_text("\n".join(old) + "\n")
    logs = exp / "runs/pancreas/unet/heuristic/repeat1/fold1/logs"
    logs.mkdir(parents=True)
    (logs / "metrics.csv").write_text("epoch,step,train_loss,val_dice\n0,9,0.9,\n0,9,,0.0\n1,19,,0.04\n")
    write_report(exp, qualitative=False)
    runs = {r["run_dir"]: r for r in read_csv(exp / "report" / "runs.csv")}
    assert float(runs["runs/pancreas/unet/heuristic/repeat1/fold1"]["best_val_dice"]) == pytest.approx(0.04)
    assert runs["runs/pancreas/unet/heuristic/repeat1/fold1"]["failed"] == "True"
    assert runs["runs/pancreas/unet/none/repeat0/fold0"]["best_val_dice"] == "nan"   # no log: not judged
    md = (exp / "report" / "report.md").read_text()
    assert "1 of 12 run(s) stayed below" in md


def test_failed_below_must_be_a_fraction(tmp_path, capsys):
    exp = tmp_path / "exp"
    write_grid(exp, repeats=2)
    with pytest.raises(SystemExit) as exc:
        main(["report", str(exp), "--failed-below", "2"])
    assert exc.value.code != 0
    assert "--failed-below" in capsys.readouterr().err
    assert not (exp / "report").exists()


@pytest.mark.slow
def test_extra_sections_are_appended(tmp_path):
    exp = tmp_path / "exp"
    write_grid(exp, repeats=2)

    def drops(exp_dir: Path, out: Path) -> list[str]:
        (out / "drops.txt").write_text("x")
        return ["## What Heuristic Dropout dropped", "", f"from {exp_dir.name}", ""]

    write_report(exp, qualitative=False, extra_sections=[drops])
    md = (exp / "report" / "report.md").read_text()
    assert md.index("## What Heuristic Dropout dropped") < md.index("## Files")
    assert "- `drops.txt`" in md
    json.dumps(md)  # plain text


@pytest.mark.slow
def test_default_report_has_the_heuristic_drops_section_when_runs_have_drops(tmp_path):
    from medseg.io import csv_text
    from medseg.regularizers.diagnostics import COLUMNS as DROP_COLUMNS

    exp = tmp_path / "exp"
    write_grid(exp, repeats=1)
    write_report(exp, qualitative=False)
    assert "What Heuristic Dropout dropped" not in (exp / "report" / "report.md").read_text()
    row = {c: 0.25 for c in DROP_COLUMNS}
    row.update(slot="model.bottleneck.reg", channels=64, spatial="4x4", dead_fraction=0.5)
    run = exp / "runs/pancreas/unet/heuristic/repeat0/fold0"
    run.mkdir(parents=True)
    (run / "drops.csv").write_text(csv_text(DROP_COLUMNS, [row]))
    write_report(exp, qualitative=False, force=True)
    md = (exp / "report" / "report.md").read_text()
    assert "## What Heuristic Dropout dropped" in md and "`model.bottleneck.reg`" in md and "50" in md


def test_foreign_drops_and_coadapt_files_are_refused_naming_them(tmp_path):
    from medseg.errors import MedsegError
    from medseg.experiments.coadapt import read_coadapt
    from medseg.experiments.drops import read_drops

    bad = tmp_path / "x.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(MedsegError, match=r"x\.csv: not a medseg drops file"):
        read_drops(bad)
    with pytest.raises(MedsegError, match=r"x\.csv: not a medseg co-adaptation file"):
        read_coadapt(bad)
