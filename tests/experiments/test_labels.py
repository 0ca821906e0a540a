"""Several labels on the experiment side: ``results.csv`` gains a ``label`` column (a headline
row per case = the mean over labels, then one row per case and label) only when a run has
labels; the report keeps its headline numbers on the headline rows and adds per-label
tables and box plots. Binary files are unchanged. No training (the end-to-end check on a
tiny nnU-Net dataset is marked slow)."""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from medseg.errors import MedsegError
from medseg.experiments import results as results_mod
from medseg.experiments.grid import RunSpec
from medseg.experiments.report import bootstrap_ci, write_report
from medseg.experiments.runner import result_rows

# The binary results.csv exactly as written before the label column existed (header and
# number formatting of medseg.io.csv_text); a binary experiment must keep writing this.
BINARY_TEXT = (
    "dataset,model,regularizer,params,repeat,fold,seed,case_id,dice,iou,hd95,nsd,best_val_dice,run_dir\n"
    "pancreas,unet,none,{},0,0,0,c1,0.5,0.25,3.0,0.75,0.6,runs/pancreas/unet/none/repeat0\n"
    "pancreas,unet,none,{},0,0,0,c2,nan,nan,nan,nan,0.6,runs/pancreas/unet/none/repeat0\n"
)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def spec(dataset: str = "pancreas", reg: str = "none", repeat: int = 0) -> RunSpec:
    return RunSpec(dataset=dataset, model="unet", regularizer=reg, params={}, repeat=repeat, seed=repeat,
                   rel_dir=f"runs/{dataset}/unet/{reg}/repeat{repeat}", config={}, fold=0)


# --------------------------------------------------------------------------- results.csv


def test_binary_results_csv_is_unchanged(tmp_path):
    nan = float("nan")
    cases = [{"case_id": "c1", "dice": 0.5, "iou": 0.25, "hd95": 3.0, "nsd": 0.75, "best_val_dice": 0.6},
             {"case_id": "c2", "dice": nan, "iou": nan, "hd95": nan, "nsd": nan, "best_val_dice": 0.6}]
    path = tmp_path / "results.csv"
    results_mod.append_run(path, result_rows(spec(), cases))
    assert path.read_text() == BINARY_TEXT
    rows = results_mod.read_results(path)
    assert [r["label"] for r in rows] == ["", ""]
    results_mod.prune(path, lambda r: True)          # read back and rewritten: still the same bytes
    results_mod.append_run(path, result_rows(spec(), cases))
    assert path.read_text() == BINARY_TEXT
    # rows built without a label key (as before) write the same file
    plain = [{k: v for k, v in r.items() if k != "label"} for r in result_rows(spec(), cases)]
    (tmp_path / "b").mkdir()
    results_mod.append_run(tmp_path / "b" / "results.csv", plain)
    assert (tmp_path / "b" / "results.csv").read_text() == BINARY_TEXT


def test_labelled_rows_add_the_label_column(tmp_path):
    cases = [{"case_id": "c1", "dice": 0.5, "iou": 0.4, "hd95": 2.0, "nsd": 0.6, "best_val_dice": 0.7,
              "labels": {"liver": {"dice": 0.8, "iou": 0.7, "hd95": 1.0, "nsd": 0.9},
                         "left_kidney": {"dice": 0.2, "iou": 0.1, "hd95": 3.0, "nsd": float("nan")}}}]
    rows = result_rows(spec("nnunet"), cases)
    assert [r["label"] for r in rows] == ["", "liver", "left_kidney"]
    assert [r["dice"] for r in rows] == [0.5, 0.8, 0.2]
    assert {r["best_val_dice"] for r in rows} == {0.7}
    path = tmp_path / "results.csv"
    results_mod.append_run(path, rows)
    lines = path.read_text().splitlines()
    assert lines[0] == ("dataset,model,regularizer,params,repeat,fold,seed,case_id,label,dice,iou,hd95,nsd,"
                        "best_val_dice,run_dir")
    assert lines[1].startswith("nnunet,unet,none,{},0,0,0,c1,,0.5,")
    assert lines[3] == "nnunet,unet,none,{},0,0,0,c1,left_kidney,0.2,0.1,3.0,nan,0.7,runs/nnunet/unet/none/repeat0"
    # a binary run joins a labelled file with label "" (a multi-dataset grid)
    results_mod.append_run(path, result_rows(spec("pancreas"), [{k: v for k, v in cases[0].items()
                                                                  if k != "labels"}]))
    back = results_mod.read_results(path)
    assert [(r["dataset"], r["label"]) for r in back] == [("nnunet", ""), ("nnunet", "liver"),
                                                          ("nnunet", "left_kidney"), ("pancreas", "")]
    assert results_mod.labels_of(back) == ["liver", "left_kidney"]
    assert len(results_mod.headline(back)) == 2
    assert results_mod.finished_runs(path) == {"runs/nnunet/unet/none/repeat0", "runs/pancreas/unet/none/repeat0"}
    # dropping the labelled run drops the column again
    results_mod.prune(path, lambda r: r["dataset"] == "pancreas")
    assert path.read_text().splitlines()[0] == BINARY_TEXT.splitlines()[0]


def test_old_files_read_as_headline_and_bad_headers_refused(tmp_path):
    old = tmp_path / "results.csv"
    old.write_text("dataset,model,regularizer,params,repeat,seed,case_id,dice,iou,run_dir\n"
                   "pancreas,unet,none,{},0,0,c1,0.5,0.25,runs/a\n")
    (row,) = results_mod.read_results(old)
    assert row["label"] == "" and row["fold"] == 0 and math.isnan(row["nsd"])
    bad = tmp_path / "bad.csv"   # label in the wrong place
    bad.write_text("dataset,model,regularizer,params,repeat,fold,seed,label,case_id,dice,iou,hd95,nsd,"
                   "best_val_dice,run_dir\n")
    with pytest.raises(MedsegError, match="not a medseg results file"):
        results_mod.read_results(bad)


def test_read_cases_csv_takes_the_label_columns(tmp_path):
    from medseg.training.metrics import CaseScore
    from medseg.training.run import cases_csv

    per = {"liver": dict(dice=0.9, iou=0.8, hd95=1.5, nsd=0.95, pred_voxels=10, label_voxels=11, intersection=9),
           "left_kidney": dict(dice=0.1, iou=0.05, hd95=9.0, nsd=0.2, pred_voxels=2, label_voxels=5,
                               intersection=1)}
    row = CaseScore("c1", 0.5, 0.425, 12, 16, 10, 5.25, 0.575, per_label=per)
    (tmp_path / "cases.csv").write_text(cases_csv([row]))
    (case,) = results_mod.read_cases_csv(tmp_path / "cases.csv")
    assert case["dice"] == 0.5 and case["hd95"] == 5.25
    assert list(case["labels"]) == ["liver", "left_kidney"]
    assert case["labels"]["left_kidney"] == {"dice": 0.1, "iou": 0.05, "hd95": 9.0, "nsd": 0.2}
    binary = CaseScore("c1", 0.5, 0.4, 1, 1, 1, 2.0, 0.5)
    (tmp_path / "cases.csv").write_text(cases_csv([binary]))
    assert "labels" not in results_mod.read_cases_csv(tmp_path / "cases.csv")[0]


# --------------------------------------------------------------------------- the report

LABELS = {"liver": 0.8, "tumour": 0.3}     # a large and a small structure
CASES = ["A", "B", "C", "D"]
SHIFT = {"none": {"liver": 0.0, "tumour": 0.0}, "heuristic": {"liver": 0.01, "tumour": 0.05}}


def write_labelled(exp: Path, repeats: int = 3) -> list[dict]:
    """results.csv of a 2-method, ``repeats``-repeat grid on a 2-label dataset; the headline row of
    each case is the mean of its two labels (as cases.csv has it)."""
    rng = np.random.default_rng(7)
    written = []
    for reg in SHIFT:
        for rep in range(repeats):
            s = spec("abdomen", reg, rep)
            cases = []
            for c in CASES:
                labels = {}
                for name, base in LABELS.items():
                    d = float(np.clip(base + SHIFT[reg][name] + rng.normal(0, 0.05), 0, 1))
                    labels[name] = {"dice": d, "iou": d / (2 - d), "hd95": 10 * (1 - d), "nsd": min(1.0, d + 0.1)}
                head = {m: float(np.mean([v[m] for v in labels.values()])) for m in ("dice", "iou", "hd95", "nsd")}
                cases.append({"case_id": c, **head, "best_val_dice": 0.5, "labels": labels})
            rows = result_rows(s, cases)
            results_mod.append_run(exp / "results.csv", rows)
            written += rows
    return written


def _means(rows, label, reg, metric):
    """Per-repeat means of one label (computed here) → (mean, std ddof=1) over repeats."""
    by_rep = defaultdict(list)
    for r in rows:
        if r["label"] == label and r["regularizer"] == reg:
            by_rep[r["repeat"]].append(r[metric])
    reps = [float(np.mean(v)) for _, v in sorted(by_rep.items())]
    return float(np.mean(reps)), float(np.std(reps, ddof=1))


@pytest.fixture(scope="module")
def labelled_report(tmp_path_factory) -> tuple[list[dict], Path]:
    """(rows written, report folder) of the 2-label grid. Read-only."""
    exp = tmp_path_factory.mktemp("labelled") / "exp"
    rows = write_labelled(exp)
    return rows, write_report(exp, qualitative=False)


def test_report_per_label_tables_have_the_right_numbers(labelled_report):
    rows, out = labelled_report

    # headline files: the mean over labels, exactly as for a binary grid
    summary = {r["method"]: r for r in read_csv(out / "summary.csv")}
    for reg in SHIFT:
        mean, std = _means(rows, "", reg, "dice")
        assert float(summary[reg]["dice_mean"]) == pytest.approx(mean, abs=1e-12)
        assert float(summary[reg]["dice_std"]) == pytest.approx(std, abs=1e-12)
    assert "label" not in read_csv(out / "summary.csv")[0]
    assert len(read_csv(out / "runs.csv")) == 6 and {r["n_cases"] for r in read_csv(out / "runs.csv")} == {"4"}

    # per label: mean ± std over repeats and the paired Δ vs none with its bootstrap CI
    lab = read_csv(out / "labels_summary.csv")
    assert [(r["label"], r["method"]) for r in lab] == [("liver", "none"), ("liver", "heuristic"),
                                                        ("tumour", "none"), ("tumour", "heuristic")]
    md = (out / "report.md").read_text()
    for r in lab:
        mean, std = _means(rows, r["label"], r["regularizer"], "dice")
        assert float(r["dice_mean"]) == pytest.approx(mean, abs=1e-12)
        assert float(r["dice_std"]) == pytest.approx(std, abs=1e-12)
        if r["method"] == "heuristic":
            mine = {(x["case_id"], x["repeat"]): x["dice"] for x in rows
                    if x["label"] == r["label"] and x["regularizer"] == "heuristic"}
            ref = {(x["case_id"], x["repeat"]): x["dice"] for x in rows
                   if x["label"] == r["label"] and x["regularizer"] == "none"}
            d = [mine[k] - ref[k] for k in sorted(mine)]
            low, high = bootstrap_ci(d)
            assert float(r["dice_delta"]) == pytest.approx(float(np.mean(d)), abs=1e-12)
            assert (float(r["dice_delta_ci_low"]), float(r["dice_delta_ci_high"])) == pytest.approx((low, high))
            assert f"{np.mean(d):+.4f} ({low:+.4f} to {high:+.4f})" in md
        assert f"| unet | {r['method']} | 3 | {mean:.4f} ± {std:.4f} |" in md
    # the tumour gain (+0.05) is found on its own, the liver's (+0.01) is smaller
    by = {(r["label"], r["method"]): r for r in lab}
    assert float(by["tumour", "heuristic"]["dice_delta"]) > float(by["liver", "heuristic"]["dice_delta"])
    assert float(by["tumour", "heuristic"]["dice_delta_ci_low"]) > 0

    comps = read_csv(out / "labels_comparisons.csv")
    assert {(c["label"], c["method"], c["reference"]) for c in comps if c["metric"] == "dice"} == {
        ("liver", "heuristic", "none"), ("liver", "none", "heuristic"),
        ("tumour", "heuristic", "none"), ("tumour", "none", "heuristic")}
    assert len(read_csv(out / "labels_repeats.csv")) == 2 * 2 * 3
    for label in LABELS:
        assert f"#### {label}" in md
    assert "mean over the labels" in md and "Several labels" in md
    assert md.index("### Per label (abdomen)") > md.index("### Paired differences")
    for metric in ("dice", "iou", "hd95", "nsd"):
        assert f"](boxplot_abdomen_labels_{metric}.png)" in md
        for ext in ("png", "svg"):
            assert (out / f"boxplot_abdomen_labels_{metric}.{ext}").stat().st_size > 1000
    summary_md = (out / "summary_abdomen.md").read_text()
    assert "## Per label" in summary_md and "### tumour" in summary_md


def test_binary_report_has_no_label_sections(labelled_report, tmp_path):
    rows, labelled = labelled_report
    exp = tmp_path / "exp"
    head = [r for r in rows if r["label"] == ""]
    for run_dir in dict.fromkeys(r["run_dir"] for r in head):
        results_mod.append_run(exp / "results.csv", [r for r in head if r["run_dir"] == run_dir])
    assert "label" not in (exp / "results.csv").read_text().splitlines()[0]
    out = write_report(exp, qualitative=False)
    assert not list(out.glob("labels_*")) and not list(out.glob("*_labels_*"))
    md = (out / "report.md").read_text()
    assert "Per label" not in md and "Several labels" not in md and "mean over the labels" not in md
    # the headline of the labelled grid is this binary grid's numbers, file for file
    for name in ("summary.csv", "runs.csv", "repeats.csv", "comparisons.csv"):
        assert (labelled / name).read_text() == (out / name).read_text(), name


def test_labelled_rows_without_headline_are_refused(tmp_path):
    exp = tmp_path / "exp"
    rows = [r for r in write_labelled(tmp_path / "tmp", repeats=1) if r["label"]]
    for run_dir in dict.fromkeys(r["run_dir"] for r in rows):
        results_mod.append_run(exp / "results.csv", [r for r in rows if r["run_dir"] == run_dir])
    with pytest.raises(MedsegError, match="headline"):
        write_report(exp, qualitative=False)


def test_label_boxplot_wraps_many_labels(tmp_path):
    from medseg.experiments import figures

    panels = [(f"organ{i}", ["none", "heuristic"], [[0.5, 0.6], [0.55, 0.65]]) for i in range(6)]
    paths = figures.boxplot_figure(panels, "DICE", "six labels", tmp_path / "six", ncols=4)
    assert all(p.stat().st_size > 1000 for p in paths)


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_tiny_labelled_grid_end_to_end(tmp_path, capsys):
    """medseg experiment / report / evaluate / coadapt / drops on a 3-label nnU-Net dataset."""
    import sys

    import yaml

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
    from nnunet_helpers import write_nnunet

    from medseg.cli import main

    root = write_nnunet(tmp_path / "ds", cases=4, labels=3)
    base = Path(__file__).resolve().parents[2] / "configs" / "cpu" / "pancreas_unet.yaml"
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(yaml.safe_dump({
        "base": str(base),
        "data": {"dataset": "nnunet", "root": str(root), "num_cases": 4, "split": [2, 1, 1], "size": [32, 32],
                 "cache_dir": str(tmp_path / "cache")},
        "model": {"depth": 2, "base_channels": 4}, "train": {"epochs": 1, "num_threads": 1},
        "grid": {"models": ["unet"], "regularizers": ["none", "heuristic"], "repeats": 1}}))
    exp = tmp_path / "exp"
    assert main(["experiment", "--config", str(cfg), "--out", str(exp), "--no-progress"]) == 0
    rows = results_mod.read_results(exp / "results.csv")
    assert [r["label"] for r in rows] == ["", "organ1", "organ2", "organ3"] * 2
    for run_dir in {r["run_dir"] for r in rows}:  # the headline row is the mean of the label rows
        mine = [r for r in rows if r["run_dir"] == run_dir]
        assert mine[0]["dice"] == pytest.approx(np.mean([r["dice"] for r in mine[1:]]))
        cases = read_csv(exp / run_dir / "cases.csv")
        assert float(cases[0]["dice_organ2"]) == pytest.approx(mine[2]["dice"])
    heuristic = exp / next(r["run_dir"] for r in rows if r["regularizer"] == "heuristic")
    assert main(["evaluate", str(heuristic), "--no-progress"]) == 0
    assert "organ3" in capsys.readouterr().out
    assert main(["drops", str(heuristic), "--no-progress"]) == 0
    assert main(["coadapt", str(exp), "--fractions", "0,0.5", "--draws", "1", "--no-progress"]) == 0
    co = read_csv(exp / "coadapt" / "coadapt.csv")
    metrics = json.loads((heuristic / "metrics.json").read_text())
    zero = [r for r in co if r["run"].endswith("heuristic/repeat0") and float(r["fraction"]) == 0.0]
    assert float(zero[0]["dice"]) == pytest.approx(metrics["dice_mean"])   # the mean over labels
    assert main(["report", str(exp)]) == 0
    rep = exp / "report"
    md = (rep / "report.md").read_text()
    assert "#### organ1" in md and "](boxplot_nnunet_labels_dice.png)" in md
    assert "organ1 red, organ2 blue, organ3 green" in md            # the qualitative figure's colours
    assert (rep / "qualitative_nnunet_unet.png").is_file()


def test_mixed_grid_two_models_label_sections_only_where_labels(tmp_path, monkeypatch):
    """A binary and a labelled dataset in one grid, two models: per-label sections only for
    the labelled dataset; its box plots have a panel per (label, model), whole labels per row."""
    from medseg.experiments import figures

    drawn = {}

    def fake_boxplot(panels, ylabel, title, stem, highlight=("heuristic",), failed_note=None, ncols=None):
        drawn[Path(stem).name] = ([p[0] for p in panels], ncols)
        return []

    monkeypatch.setattr(figures, "boxplot_figure", fake_boxplot)
    exp = tmp_path / "exp"
    rows = [r for r in write_labelled(tmp_path / "tmp", repeats=2)]
    twin = [{**r, "model": "unet3plus", "run_dir": r["run_dir"].replace("/unet/", "/unet3plus/")} for r in rows]
    binary = [{**r, "dataset": "pancreas", "run_dir": r["run_dir"].replace("abdomen", "pancreas")}
              for r in rows if r["label"] == ""]
    everything = rows + twin + binary
    for run_dir in dict.fromkeys(r["run_dir"] for r in everything):
        results_mod.append_run(exp / "results.csv", [r for r in everything if r["run_dir"] == run_dir])
    out = write_report(exp, qualitative=False)
    assert drawn["boxplot_abdomen_labels_dice"] == (["liver — unet", "liver — unet3plus", "tumour — unet",
                                                     "tumour — unet3plus"], 4)
    assert "boxplot_pancreas_labels_dice" not in drawn and "boxplot_pancreas_dice" in drawn
    md = (out / "report.md").read_text()
    pancreas = md[md.index("## pancreas"):]
    abdomen = md[md.index("## abdomen"):md.index("## pancreas")]
    assert "Per label" not in pancreas and "### Per label (abdomen)" in abdomen
    assert "| unet3plus | heuristic | 2 |" in abdomen
    assert {r["dataset"] for r in read_csv(out / "labels_summary.csv")} == {"abdomen"}
    assert "## Per label" not in (out / "summary_pancreas.md").read_text()
