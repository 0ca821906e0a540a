"""The learning curve of ``medseg report`` (experiments with ``grid.train_sizes``).

Each method was trained on ``n`` of the split's training scans for every ``n`` of
``grid.train_sizes`` (``data.train_size``; nested seeded subsets, the same validation
and test scans). Per dataset, model, method and size (from the report's
:class:`~.statistics.Analysis` — the tuned one when the experiment was tuned):

* the mean test DICE: the mean over repeats of the per-repeat means over the test cases,
  with a 95 % percentile bootstrap CI over the per-case test DICE of every repeat and fold
  (``scipy.stats.bootstrap``, the seed and resamples of :mod:`.statistics`) — the band of
  the plot;
* the paired Δ against ``none`` **at the same size** with its 95 % bootstrap CI
  (:func:`.statistics.attach_deltas`).

Files: ``learning_curve_<dataset>.csv`` and ``learning_curve_<dataset>_<model>.png|svg``.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping

from ..grid import TRAIN_SIZE_KEY, method_label
from .statistics import BASELINE, Analysis, bootstrap_ci
from .tables import cell_text, delta_text, md_table, table_csv

CURVE_COLUMNS = ["dataset", "model", "method", "train_size", "n_repeats", "dice_mean", "dice_std",
                 "dice_ci_low", "dice_ci_high", "dice_delta", "dice_delta_ci_low", "dice_delta_ci_high"]


def _size_and_method(cell: Mapping[str, Any]) -> tuple[int | None, str]:
    params = json.loads(cell["params"])
    size = params.pop(TRAIN_SIZE_KEY, None)
    return size, method_label(cell["regularizer"], params)


def curve_points(a: Analysis, dataset: str) -> list[dict[str, Any]]:
    """One record per (model, method, size) of ``dataset`` ([] without ``data.train_size``)."""
    case_dice: dict[tuple, list[float]] = defaultdict(list)
    for r in a.rows:
        if r["dataset"] == dataset and not math.isnan(r["dice"]):
            case_dice[(r["model"], r["regularizer"], r["params"])].append(r["dice"])
    out = []
    for c in a.cells:
        size, method = _size_and_method(c)
        if c["dataset"] != dataset or size is None:
            continue
        low, high = bootstrap_ci(case_dice[(c["model"], c["regularizer"], c["params"])])
        out.append({"dataset": dataset, "model": c["model"], "regularizer": c["regularizer"], "method": method,
                    "train_size": size,
                    "n_repeats": c["n_repeats"], "dice_mean": c["dice_mean"], "dice_std": c["dice_std"],
                    "dice_ci_low": low, "dice_ci_high": high, "dice_delta": c["dice_delta"],
                    "dice_delta_ci_low": c["dice_delta_ci_low"], "dice_delta_ci_high": c["dice_delta_ci_high"]})
    return sorted(out, key=lambda p: (p["model"], p["train_size"]))


def draw(points: list[Mapping[str, Any]], title: str, stem: Path) -> None:
    """Mean test DICE against training-set size, one line (and CI band) per method."""
    from ..figures import new_figure, save_figure

    fig = new_figure(6.0, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    for method in dict.fromkeys(p["method"] for p in points):
        mine = [p for p in points if p["method"] == method]
        x = [p["train_size"] for p in mine]
        line, = ax.plot(x, [p["dice_mean"] for p in mine], marker="o", label=method)
        ax.fill_between(x, [p["dice_ci_low"] for p in mine], [p["dice_ci_high"] for p in mine],
                        color=line.get_color(), alpha=0.15, linewidth=0)
    sizes = sorted({p["train_size"] for p in points})
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.set_xlabel("training scans")
    ax.set_ylabel("test DICE (mean, 95 % CI)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    save_figure(fig, stem)


def section(out: Path, a: Analysis, dataset: str) -> list[str]:
    """Write the curve's CSV and figures; return ``report.md``'s *Learning curve* section."""
    points = curve_points(a, dataset)
    if not points:
        return []
    (out / f"learning_curve_{dataset}.csv").write_text(table_csv(CURVE_COLUMNS, points))
    lines = [f"## Learning curve ({dataset})", "",
             "Each method trained on n of the split's training scans (a seeded subset, nested: the smaller "
             "sets are inside the larger; the same validation and test scans at every n). Mean test DICE "
             "over repeats ± std, its 95 % bootstrap CI over the per-case test DICE (the band in the plot), "
             f"and the paired difference against `{BASELINE}` at the same n with its 95 % bootstrap CI.", ""]
    for model in dict.fromkeys(p["model"] for p in points):
        mine = [p for p in points if p["model"] == model]
        stem = f"learning_curve_{dataset}_{model}"
        draw(mine, f"{dataset}, {model}: test DICE by training-set size", out / stem)
        rows = [[str(p["train_size"]), p["method"], str(p["n_repeats"]), cell_text(p["dice_mean"], p["dice_std"]),
                 delta_text(p["dice_delta"], p["dice_delta_ci_low"], p["dice_delta_ci_high"])] for p in mine]
        lines += [f"### {model}", "",
                  md_table(["training scans", "method", "repeats", "DICE mean ± std", f"Δ DICE vs {BASELINE} (95 % CI)"],
                           rows), "", f"![learning curve]({stem}.png)", ""]
        lines += _verdicts(mine) + [""]
    return lines


def _verdicts(points: list[Mapping[str, Any]]) -> list[str]:
    """Per size: which methods' Δ vs none has a CI above 0 (help), below 0 (hurt), or neither."""
    lines = []
    for size in sorted({p["train_size"] for p in points}):
        others = [p for p in points if p["train_size"] == size and not math.isnan(p["dice_delta"])
                  and p["regularizer"] != BASELINE]
        helps = [p["method"] for p in others if p["dice_delta_ci_low"] > 0]
        hurts = [p["method"] for p in others if p["dice_delta_ci_high"] < 0]
        text = (f"helps: {', '.join(helps)}" if helps else "no method's CI is above 0")
        text += f"; hurts: {', '.join(hurts)}" if hurts else ""
        lines.append(f"- {size} training scans: {text}.")
    return lines
