"""Which figures a report draws, from its numbers (the drawing itself: :mod:`medseg.experiments.figures`).

Each function writes PNG + SVG files into the report folder and returns what the
Markdown writer needs to reference and describe them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import figures
from .statistics import METRICS, Analysis
from .tables import metric_name


def boxplots(out: Path, a: Analysis, dataset: str) -> dict[str, str]:
    """One box plot per metric (per-repeat values, one panel per model); metric → file stem.
    Repeats holding a run that did not converge are drawn as red crosses."""
    mine = [c for c in a.cells if c["dataset"] == dataset]
    note = (f"× = a repeat with a run that did not converge (best validation DICE < {a.failed_below:g})"
            if any(c["failed_runs"] for c in mine) else None)
    n_max = max(c["n_repeats"] for c in mine)
    stems = {}
    for metric in METRICS:
        panels = []
        for model in sorted({c["model"] for c in mine}):
            cells = [c for c in mine if c["model"] == model]
            reps = [[r for r in a.repeats if r["dataset"] == dataset and r["model"] == model
                     and r["method"] == c["method"]] for c in cells]
            panels.append((model, [c["method"] for c in cells], [[r[metric] for r in rs] for rs in reps],
                           [[r["failed"] > 0 for r in rs] for rs in reps]))
        stem = f"boxplot_{dataset}_{metric}"
        name = metric_name(metric, dataset)
        figures.boxplot_figure(panels, f"test {name} (mean over cases, per repeat)",
                               f"{dataset}: {name} over {n_max} repeats per method", out / stem,
                               failed_note=note)
        stems[metric] = stem
    return stems


#: at most this many label panels per row of a per-label box plot (with several models: whole
#: labels per row, each with a panel per model)
LABEL_PANELS_PER_ROW = 4


def label_boxplots(out: Path, a: Analysis, dataset: str) -> dict[str, str]:
    """Several labels: one figure per metric with a panel per label (per label and model when
    the grid has several models), each a box of the per-repeat values of every method (the
    repeat's mean over test cases of that label alone); metric → file stem
    ``boxplot_<dataset>_labels_<metric>``. {} for a binary dataset."""
    labels = a.labels_of(dataset)
    if not labels:
        return {}
    cells = {name: [c for c in a.labels[name].cells if c["dataset"] == dataset] for name in labels}
    models = sorted({c["model"] for cs in cells.values() for c in cs})
    failed = any(c["failed_runs"] for cs in cells.values() for c in cs)
    note = (f"× = a repeat with a run that did not converge (best validation DICE < {a.failed_below:g})"
            if failed else None)
    stems = {}
    for metric in METRICS:
        panels = []
        for name in labels:
            la = a.labels[name]
            for model in models:
                mine = [c for c in cells[name] if c["model"] == model]
                reps = [[r for r in la.repeats if r["dataset"] == dataset and r["model"] == model
                         and r["method"] == c["method"]] for c in mine]
                panels.append((name if len(models) == 1 else f"{name} — {model}", [c["method"] for c in mine],
                               [[r[metric] for r in rs] for rs in reps], [[r["failed"] > 0 for r in rs] for rs in reps]))
        stem = f"boxplot_{dataset}_labels_{metric}"
        mname = metric_name(metric, dataset)
        figures.boxplot_figure(panels, f"test {mname} (mean over cases, per repeat)",
                               f"{dataset}: {mname} per label", out / stem, failed_note=note,
                               ncols=len(models) * max(1, LABEL_PANELS_PER_ROW // len(models)))
        stems[metric] = stem
    return stems


def k_ablation(out: Path, ab: dict[str, Any]) -> str:
    stem = f"k_ablation_{ab['dataset']}_{ab['model']}_{ab['regularizer']}"
    figures.k_ablation_figure(ab["ks"], ab["dice"], ab["iou"],
                              f"{ab['dataset']}, {ab['model']}: {ab['regularizer']}, k ablation", out / stem)
    return stem


def qualitative(exp_dir: Path, out: Path, a: Analysis, dataset: str, n_slices: int) -> list[dict[str, Any]]:
    """Per model: each method's first run (lowest repeat and fold), its test slices predicted
    and drawn; ``missing`` lists methods whose checkpoint is gone (then nothing is drawn)."""
    drawn = []
    mine = [r for r in a.runs if r["dataset"] == dataset]
    fold = min(r["fold"] for r in mine)  # one fold for all methods: the same test slices
    for model in sorted({r["model"] for r in mine}):
        runs: dict[str, str] = {}
        for r in mine:
            if r["model"] == model and r["fold"] == fold:
                runs.setdefault(r["method"], r["run_dir"])  # runs are sorted by repeat
        missing = [m for m, rel in runs.items() if not (exp_dir / rel / "checkpoints" / "best.ckpt").is_file()]
        info: dict[str, Any] = {"model": model, "missing": missing, "stem": None, "picks": [],
                                "labels": a.labels_of(dataset)}
        if not missing:
            info["stem"] = f"qualitative_{dataset}_{model}"
            _, info["picks"] = figures.render_qualitative(exp_dir, runs, f"{dataset}, {model}: test slices",
                                                          out / info["stem"], n_slices)
        drawn.append(info)
    return drawn


def coadapt(exp_dir: Path, out: Path) -> dict[str, Any] | None:
    """``coadapt/coadapt.csv`` drawn per dataset; None when the file does not exist."""
    from ..coadapt import read_coadapt, series_by_panel

    path = exp_dir / "coadapt" / "coadapt.csv"
    if not path.is_file():
        return None
    rows = read_coadapt(path)
    series = {}
    for dataset in sorted({r["dataset"] for r in rows}):
        series[dataset] = series_by_panel([r for r in rows if r["dataset"] == dataset])
        figures.coadapt_figure(series[dataset], f"Co-adaptation test — {dataset}", out / f"coadapt_{dataset}")
    return {"n_rows": len(rows), "series": series}
