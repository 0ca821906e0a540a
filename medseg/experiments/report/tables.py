"""Text of the report: number formats, Markdown tables, one sentence per comparison, CSV files.

Only formatting lives here; every number comes from :mod:`.statistics`.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

from ...io import csv_text
from ...training.metrics import distance_unit
from .statistics import LOWER_IS_BETTER, METRICS, REFERENCES, Comparison, min_p

METRIC_NAMES = {"dice": "DICE", "iou": "IoU", "hd95": "HD95", "nsd": "NSD"}
NAN = float("nan")


def metric_name(metric: str, dataset: str) -> str:
    """The metric's label, HD95 with its unit on ``dataset`` (mm for CT, px for BAGLS frames)."""
    name = METRIC_NAMES[metric]
    return f"{name} ({distance_unit(dataset)})" if metric == "hd95" else name


def fmt(v: float | None, digits: int = 4) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def fmt_signed(v: float, digits: int = 4) -> str:
    return "n/a" if math.isnan(v) else f"{v:+.{digits}f}"


def fmt_p(p: float | None) -> str:
    if p is None or math.isnan(p):
        return "—"
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"


def cell_text(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "n/a"
    return f"{fmt(mean)} ± {fmt(std)}" if not math.isnan(std) else f"{fmt(mean)} (n=1)"


def md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- summary


def summary_markdown(cells: list[Mapping[str, Any]], dataset: str, metric: str,
                     without_failed: bool = False) -> str:
    """Rows = methods, columns = models: mean ± std over repeats and the two p-values (over
    repeats); ``without_failed``: also the mean ± std without the runs that did not converge."""
    mine = [c for c in cells if c["dataset"] == dataset]
    models = list(dict.fromkeys(c["model"] for c in mine))    # order of first appearance
    methods = list(dict.fromkeys(c["method"] for c in mine))
    by = {(c["method"], c["model"]): c for c in mine}
    name = metric_name(metric, dataset)
    header = ["method"]
    for m in models:
        header += [f"{m}: {name} mean ± std (all runs)"]
        header += [f"{m}: without failed runs"] if without_failed else []
        header += ["p vs none", "p vs heuristic"]
    rows = []
    for meth in methods:
        row = [meth]
        for m in models:
            c = by.get((meth, m))
            if c is None:
                row += ["—"] * (4 if without_failed else 3)
                continue
            row.append(cell_text(c[f"{metric}_mean"], c[f"{metric}_std"]))
            if without_failed:
                row.append(cell_text(c[f"{metric}_mean_without_failed"], c[f"{metric}_std_without_failed"]))
            row += [fmt_p(c[f"{metric}_p_vs_none"]), fmt_p(c[f"{metric}_p_vs_heuristic"])]
        rows.append(row)
    return md_table(header, rows)


def delta_text(delta: float, low: float, high: float) -> str:
    """A paired difference with its CI: ``+0.0123 (-0.0100 to +0.0300)``; ``—`` when not compared."""
    if math.isnan(delta):
        return "—"
    ci = "CI n/a" if math.isnan(low) else f"{fmt_signed(low)} to {fmt_signed(high)}"
    return f"{fmt_signed(delta)} ({ci})"


def label_markdown(cells: list[Mapping[str, Any]], dataset: str) -> str:
    """One label's table: rows = model × method; per metric the mean ± std over repeats and the
    paired difference against ``none`` with its 95 % bootstrap CI (over case pairs)."""
    mine = [c for c in cells if c["dataset"] == dataset]
    header = ["model", "method", "repeats"]
    for m in METRICS:
        name = metric_name(m, dataset)
        header += [f"{name} mean ± std", f"Δ {name} vs none (95 % CI)"]
    rows = []
    for c in sorted(mine, key=lambda c: c["model"]):  # stable: methods stay in their order
        row = [c["model"], c["method"], str(c["n_repeats"])]
        for m in METRICS:
            row += [cell_text(c[f"{m}_mean"], c[f"{m}_std"]),
                    delta_text(c[f"{m}_delta"], c[f"{m}_delta_ci_low"], c[f"{m}_delta_ci_high"])]
        rows.append(row)
    return md_table(header, rows)


# --------------------------------------------------------------------------- comparisons


def _verdict(c: Comparison) -> str:
    if c.n_pairs < 2 or math.isnan(c.ci_low):
        return "too few paired cases for a confidence interval"
    if c.spans_zero:
        return "no evidence of a difference (the CI spans 0)"
    better = (c.delta < 0) if c.metric in LOWER_IS_BETTER else (c.delta > 0)
    return f"{c.method} is {'better' if better else 'worse'} than {c.reference} (the CI excludes 0)"


def _p_text(p: float, n: int, what: str) -> str:
    if n < 2:
        return f"over {what}: not testable (n = {n})"
    return f"over {n} {what}: p = {fmt_p(p)} (smallest attainable {fmt_p(min_p(n))})"


def sentence(c: Comparison) -> str:
    """One plain sentence: the paired difference, its CI, the verdict and both Wilcoxon tests."""
    name = METRIC_NAMES[c.metric]
    unit = f" {distance_unit(c.dataset)}" if c.metric == "hd95" else ""
    direction = "lower is better" if c.metric in LOWER_IS_BETTER else "higher is better"
    if c.n_pairs == 0:
        return f"{c.model}, {c.method} vs {c.reference}, {name}: no paired cases."
    return (f"{c.model}, {c.method} vs {c.reference}, {name} ({direction}): mean paired difference "
            f"{fmt_signed(c.delta)}{unit} (95 % CI {fmt_signed(c.ci_low)} to {fmt_signed(c.ci_high)}{unit}; "
            f"{c.n_pairs} case pairs) — {_verdict(c)}. Wilcoxon {_p_text(c.p_cases, c.n_cases, 'test cases')}; "
            f"{_p_text(c.p_repeats, c.n_repeats, 'repeats')}.")


def comparison_markdown(comps: list[Comparison], metric: str) -> str:
    """One row per (model, method, reference) of one metric."""
    dataset = comps[0].dataset if comps else ""
    header = ["model", "method", "vs", "pairs", f"Δ {metric_name(metric, dataset)}", "95 % CI",
              "Wilcoxon p, cases (n)", "Wilcoxon p, repeats (n)"]
    rows = [[c.model, c.method, c.reference, str(c.n_pairs), fmt_signed(c.delta),
             f"{fmt_signed(c.ci_low)} to {fmt_signed(c.ci_high)}",
             f"{fmt_p(c.p_cases)} ({c.n_cases})", f"{fmt_p(c.p_repeats)} ({c.n_repeats})"]
            for c in comps if c.metric == metric]
    return md_table(header, rows)


# --------------------------------------------------------------------------- failed runs


def failed_markdown(failed: list[Mapping[str, Any]]) -> str:
    header = ["model", "method", "repeat", "fold", "seed", "best val DICE", "test DICE", "run folder"]
    rows = [[r["model"], r["method"], str(r["repeat"]), str(r["fold"]), str(r["seed"]),
             fmt(r["best_val_dice"]), fmt(r["dice"]), f"`{r['run_dir']}`"] for r in failed]
    return md_table(header, rows)


# --------------------------------------------------------------------------- CSV files


SUMMARY_COLUMNS = (["dataset", "model", "method", "regularizer", "params", "n_repeats", "failed_runs"]
                   + [f"{m}_{s}" for m in METRICS for s in ("mean", "std")]
                   + [f"{m}_{s}_without_failed" for m in METRICS for s in ("mean", "std")]
                   + [f"{m}_p_vs_{ref}" for m in METRICS for ref in REFERENCES]
                   + [f"{m}_delta{s}" for m in METRICS for s in ("", "_ci_low", "_ci_high")]
                   + [f"{m}_delta{s}_vs_heuristic" for m in METRICS for s in ("", "_ci_low", "_ci_high")])
REPEAT_COLUMNS = ["dataset", "model", "method", "regularizer", "params", "repeat", "seed", "folds",
                  "n_cases", "failed", *METRICS, "run_dir"]
RUN_COLUMNS = ["dataset", "model", "method", "regularizer", "params", "repeat", "fold", "seed", "n_cases",
               "best_val_dice", "failed", *METRICS, "run_dir"]
COMPARISON_COLUMNS = ["dataset", "model", "method", "reference", "metric", "lower_is_better", "n_pairs",
                      "delta", "ci_low", "ci_high", "n_resamples", "bootstrap_seed", "n_cases", "p_cases",
                      "min_p_cases", "n_repeats", "p_repeats", "min_p_repeats", "sentence"]
#: the per-label CSV files (labels_summary.csv, …): the label, then the headline file's columns
LABEL_SUMMARY_COLUMNS = ["label", *SUMMARY_COLUMNS]
LABEL_REPEAT_COLUMNS = ["label", *REPEAT_COLUMNS]
LABEL_COMPARISON_COLUMNS = ["label", *COMPARISON_COLUMNS]


def table_csv(columns: Sequence[str], records: Iterable[Mapping[str, Any]]) -> str:
    """CSV text of ``records`` (missing values as ``nan``), via :func:`medseg.io.csv_text`."""
    return csv_text(columns, ({c: r.get(c, NAN) for c in columns} for r in records))


def comparisons_csv(comps: Iterable[Comparison]) -> str:
    return table_csv(COMPARISON_COLUMNS, ({**c.as_row(), "sentence": sentence(c)} for c in comps))


def label_comparisons_csv(by_label: Mapping[str, Iterable[Comparison]]) -> str:
    return table_csv(LABEL_COMPARISON_COLUMNS, ({"label": label, **c.as_row(), "sentence": sentence(c)}
                                                for label, comps in by_label.items() for c in comps))
