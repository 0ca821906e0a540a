"""``medseg report DIR``: tables, significance tests and figures from ``results.csv``.

Everything is recomputed from ``DIR/results.csv`` (plus ``DIR/coadapt/coadapt.csv``
for the co-adaptation test, and the run checkpoints for the qualitative figure):

* **per repeat**: the mean over the test cases of the run of the per-case DICE /
  IoU (cases with NaN — both empty under ``eval.empty_score: null`` — left out),
  i.e. the run's ``metrics.json`` ``dice_mean``/``iou_mean``;
* **per cell** (dataset × model × method): mean and standard deviation (ddof=1;
  undefined for one repeat) of the per-repeat means over the repeats;
* **significance**: the paired Wilcoxon signed-rank test (``scipy.stats.wilcoxon``,
  two-sided, zero differences dropped, ``method="auto"``: the exact null
  distribution for small samples) of the per-repeat means of a method against
  those of the baseline (``none``) and of Heuristic Dropout (``heuristic``) of the
  same dataset and model, repeats paired by repeat index (= the same seed and the
  same split); only repeats present for both are used. With n pairs the smallest
  attainable two-sided p is 2/2^n (0.0625 for n = 5): five repeats can never give
  p < 0.05. When all differences are zero p = 1.

``DIR/report/`` holds ``report.md`` (embeds every figure; states data, split, seeds
and the aggregation), ``summary_<dataset>.md`` / ``.csv`` (rows = methods, columns =
models), ``repeats.csv`` (the per-repeat means behind every number), box plots
``boxplot_<dataset>_<dice|iou>.png|svg`` (paper Fig. 1), ``k_ablation_*.png|svg``
when a regularizer's ``k`` was swept (Fig. 3), ``coadapt_<dataset>.png|svg`` and
``coadapt.md`` when ``DIR/coadapt/coadapt.csv`` exists (Fig. 4), and
``qualitative_<dataset>_<model>.png|svg`` (Fig. 2, rule in :mod:`.figures`).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from ..errors import MedsegError
from ..io import atomic_dir
from . import figures
from .grid import method_label
from .results import FILENAME, read_results

BASELINE = "none"
HEURISTIC = "heuristic"
METRICS = ("dice", "iou")
METRIC_NAMES = {"dice": "DICE", "iou": "IoU"}


# --------------------------------------------------------------------------- numbers


def _nanmean(values: Iterable[float]) -> float:
    vs = [v for v in values if not math.isnan(v)]
    return float(np.mean(vs)) if vs else float("nan")


def _method_order(regularizer: str, params_json: str) -> tuple:
    try:
        from ..regularizers.catalogue import ORDER
    except Exception:  # pragma: no cover - catalogue unavailable
        ORDER = [BASELINE, HEURISTIC]
    params = json.loads(params_json) if params_json else {}

    def sortable(v: Any) -> tuple:
        return (0, float(v), "") if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, 0.0, str(v))

    rank = ORDER.index(regularizer) if regularizer in ORDER else len(ORDER)
    return (rank, regularizer, [(k, sortable(v)) for k, v in sorted(params.items())])


def per_repeat(rows: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One record per run: the mean over its test cases of DICE and IoU."""
    groups: dict[tuple, list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["dataset"], r["model"], r["regularizer"], r["params"], r["repeat"])].append(r)
    out = []
    for (dataset, model, reg, params, repeat), rs in groups.items():
        seeds = {r["seed"] for r in rs}
        runs = {r["run_dir"] for r in rs}
        if len(seeds) != 1 or len(runs) != 1:
            raise MedsegError(f"{FILENAME}: {dataset}/{model}/{method_label(reg, params)} repeat {repeat} "
                              "has rows of several runs or seeds")
        out.append({"dataset": dataset, "model": model, "regularizer": reg, "params": params,
                    "method": method_label(reg, params), "repeat": repeat, "seed": seeds.pop(),
                    "run_dir": runs.pop(), "n_cases": len(rs),
                    "dice": _nanmean(r["dice"] for r in rs), "iou": _nanmean(r["iou"] for r in rs)})
    out.sort(key=lambda r: (r["dataset"], r["model"], _method_order(r["regularizer"], r["params"]),
                            r["repeat"]))
    return out


def mean_std(values: list[float]) -> tuple[float, float]:
    vs = [v for v in values if not math.isnan(v)]
    if not vs:
        return float("nan"), float("nan")
    return float(np.mean(vs)), (float(np.std(vs, ddof=1)) if len(vs) > 1 else float("nan"))


def paired_wilcoxon(a: Mapping[int, float], b: Mapping[int, float]) -> tuple[float, int]:
    """Two-sided Wilcoxon signed-rank p of a vs b over the repeats both have; (p, n pairs)."""
    from scipy.stats import wilcoxon

    common = sorted(r for r in set(a) & set(b) if not (math.isnan(a[r]) or math.isnan(b[r])))
    n = len(common)
    if n < 2:
        return float("nan"), n
    x = np.array([a[r] for r in common])
    y = np.array([b[r] for r in common])
    if np.all(x == y):
        return 1.0, n
    return float(wilcoxon(x, y, zero_method="wilcox", alternative="two-sided", method="auto").pvalue), n


def min_p(n: int) -> float:
    """Smallest attainable two-sided exact Wilcoxon p with n pairs: 2 / 2**n."""
    return 2.0 / 2 ** n


def summarize(repeats: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One record per dataset × model × method with mean/std and p-values per metric."""
    cells: dict[tuple, list[Mapping[str, Any]]] = defaultdict(list)
    for r in repeats:
        cells[(r["dataset"], r["model"], r["regularizer"], r["params"])].append(r)

    def partner(dataset: str, model: str, params: str, regularizer: str) -> tuple | None:
        # the same non-regularizer sweep values ("train.lr": …) and, for the reference,
        # its default parameters if it was run with several
        mine = {k: v for k, v in json.loads(params).items() if "." in k}
        found = [key for key in cells if key[0] == dataset and key[1] == model and key[2] == regularizer
                 and {k: v for k, v in json.loads(key[3]).items() if "." in k} == mine]
        if len(found) == 1:
            return found[0]
        plain = [key for key in found if not any("." not in k for k in json.loads(key[3]))]
        return plain[0] if len(plain) == 1 else None

    out = []
    for key, rs in cells.items():
        dataset, model, reg, params = key
        rec: dict[str, Any] = {"dataset": dataset, "model": model, "method": method_label(reg, params),
                               "regularizer": reg, "params": params, "n_repeats": len(rs),
                               "repeats": [r["repeat"] for r in rs], "seeds": [r["seed"] for r in rs]}
        for m in METRICS:
            rec[f"{m}_mean"], rec[f"{m}_std"] = mean_std([r[m] for r in rs])
        for ref_name in (BASELINE, HEURISTIC):
            ref = partner(dataset, model, params, ref_name)
            for m in METRICS:
                p, n = float("nan"), 0
                if ref is not None and ref != key:
                    mine = {r["repeat"]: r[m] for r in rs}
                    theirs = {r["repeat"]: r[m] for r in cells[ref]}
                    p, n = paired_wilcoxon(mine, theirs)
                    rec[f"{m}_delta_vs_{ref_name}"] = rec[f"{m}_mean"] - mean_std(list(theirs.values()))[0]
                rec[f"{m}_p_vs_{ref_name}"] = p
                rec[f"{m}_n_pairs_vs_{ref_name}"] = n
        out.append(rec)
    out.sort(key=lambda r: (r["dataset"], _method_order(r["regularizer"], r["params"]), r["model"]))
    return out


def k_ablations(repeats: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Groups of methods that differ only in the regularizer parameter ``k`` (≥ 2 values)."""
    groups: dict[tuple, dict[Any, list[Mapping[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in repeats:
        params = json.loads(r["params"])
        if "k" not in params:
            continue
        rest = json.dumps({k: v for k, v in params.items() if k != "k"}, sort_keys=True)
        groups[(r["dataset"], r["model"], r["regularizer"], rest)][params["k"]].append(r)
    out = []
    for (dataset, model, reg, rest), by_k in sorted(groups.items()):
        if len(by_k) < 2:
            continue
        ks = sorted(by_k, key=lambda k: (float(k) if isinstance(k, (int, float)) else math.inf, str(k)))
        out.append({"dataset": dataset, "model": model, "regularizer": reg, "rest": json.loads(rest),
                    "ks": ks, "dice": [[r["dice"] for r in by_k[k]] for k in ks],
                    "iou": [[r["iou"] for r in by_k[k]] for k in ks],
                    "n": [len(by_k[k]) for k in ks]})
    return out


# --------------------------------------------------------------------------- formatting


def fmt(v: float, digits: int = 4) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def fmt_p(p: float) -> str:
    if p is None or math.isnan(p):
        return "—"
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"


def cell_text(mean: float, std: float) -> str:
    return f"{fmt(mean)} ± {fmt(std)}" if not math.isnan(std) else f"{fmt(mean)} (n=1)"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _csv(header: list[str], rows: Iterable[Iterable[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow(["nan" if isinstance(v, float) and math.isnan(v) else
                    (repr(v) if isinstance(v, float) else v) for v in r])
    return buf.getvalue()


SUMMARY_COLUMNS = ["dataset", "model", "method", "regularizer", "params", "n_repeats",
                   "dice_mean", "dice_std", "iou_mean", "iou_std",
                   "dice_p_vs_none", "dice_p_vs_heuristic", "iou_p_vs_none", "iou_p_vs_heuristic"]
REPEAT_COLUMNS = ["dataset", "model", "method", "regularizer", "params", "repeat", "seed", "n_cases",
                  "dice", "iou", "run_dir"]


def summary_markdown(cells: list[Mapping[str, Any]], dataset: str, metric: str) -> str:
    """Rows = methods, columns = models: mean ± std and the two p-values."""
    mine = [c for c in cells if c["dataset"] == dataset]
    models = list(dict.fromkeys(c["model"] for c in mine))    # order of first appearance
    methods = list(dict.fromkeys(c["method"] for c in mine))
    by = {(c["method"], c["model"]): c for c in mine}
    name = METRIC_NAMES[metric]
    header = ["method"]
    for m in models:
        header += [f"{m}: {name} mean ± std", "p vs none", "p vs heuristic"]
    rows = []
    for meth in methods:
        row = [meth]
        for m in models:
            c = by.get((meth, m))
            if c is None:
                row += ["—", "—", "—"]
                continue
            text = cell_text(c[f"{metric}_mean"], c[f"{metric}_std"])
            row += [text, fmt_p(c[f"{metric}_p_vs_none"]), fmt_p(c[f"{metric}_p_vs_heuristic"])]
        rows.append(row)
    return _md_table(header, rows)


# --------------------------------------------------------------------------- the report


def _load_yaml(path: Path) -> Any:
    import yaml

    try:
        return yaml.safe_load(path.read_text()) if path.is_file() else None
    except Exception:
        return None


def _split_text(path: Path) -> list[str]:
    try:
        split = json.loads(path.read_text())
    except Exception:
        return [f"- split file `{path.name}`: not found"]
    lines = [f"- split file `{path.name}` (drawn once, shared by every run): dataset "
             f"`{split.get('dataset')}`, root `{split.get('root')}`, layout `{split.get('layout')}`, "
             f"split seed {split.get('seed')}"]
    for name in ("train", "val", "test"):
        ids = split.get(name, [])
        shown = ", ".join(ids[:12]) + (f", … ({len(ids) - 12} more)" if len(ids) > 12 else "")
        lines.append(f"  - {name}: {len(ids)} case(s): {shown}")
    return lines


def _coadapt_section(exp_dir: Path, out: Path) -> tuple[list[str], list[Path]]:
    from .coadapt import read_coadapt, series_by_panel

    path = exp_dir / "coadapt" / "coadapt.csv"
    if not path.is_file():
        return [], []
    rows = read_coadapt(path)
    lines = ["## Co-adaptation test (paper Fig. 4)", "",
             f"From `coadapt/coadapt.csv` ({len(rows)} rows): for each trained model a random fraction "
             "of the feature maps entering the final 1×1 output convolution is zeroed (one random "
             "channel set per draw, nested across fractions, the same for every slice; no rescaling) "
             "and the test split is scored again. Curves: mean ± std of the test DICE over draws and "
             "repeats. A smaller drop means less co-adaptation.", ""]
    files: list[Path] = []
    for dataset in sorted({r["dataset"] for r in rows}):
        sub = [r for r in rows if r["dataset"] == dataset]
        series = series_by_panel(sub)
        files += figures.coadapt_figure(series, f"Co-adaptation test — {dataset}", out / f"coadapt_{dataset}")
        lines += [f"### {dataset}", "", f"![co-adaptation {dataset}](coadapt_{dataset}.png)", ""]
        for panel, methods in series.items():
            fractions = sorted({f for fr, _, _ in methods.values() for f in fr})
            header = ["method"] + [f"{f:g}" for f in fractions]
            table = []
            for meth, (fr, mean, _) in methods.items():
                lookup = dict(zip(fr, mean))
                table.append([meth] + [fmt(lookup.get(f, float("nan")), 3) for f in fractions])
            lines += [f"Mean test DICE by fraction zeroed — {panel}:", "", _md_table(header, table), ""]
    return lines, files


def write_report(exp_dir: str | Path, *, force: bool = False, qualitative: bool = True,
                 n_slices: int = 4) -> Path:
    """Write ``DIR/report/`` (see the module docstring); return its path."""
    exp_dir = Path(exp_dir)
    results_path = exp_dir / FILENAME
    if not results_path.is_file():
        raise MedsegError(f"{results_path}: no results yet (run `medseg experiment` first)")
    rows = read_results(results_path)
    if not rows:
        raise MedsegError(f"{results_path}: no finished runs yet")
    target = exp_dir / "report"
    if target.exists() and not force:
        raise MedsegError(f"{target}: report exists (use --force to replace it)")
    experiment = _load_yaml(exp_dir / "experiment.yaml")
    repeats = per_repeat(rows)
    cells = summarize(repeats)
    datasets = sorted({r["dataset"] for r in repeats})
    with atomic_dir(target) as out:
        md = _report_markdown(exp_dir, out, rows, repeats, cells, datasets, experiment,
                              qualitative, n_slices)
        (out / "report.md").write_text(md)
    return target


def _report_markdown(exp_dir: Path, out: Path, rows, repeats, cells, datasets, experiment,
                     qualitative: bool, n_slices: int) -> str:
    (out / "repeats.csv").write_text(_csv(REPEAT_COLUMNS, ([r[c] for c in REPEAT_COLUMNS] for r in repeats)))
    n_runs = len({r["run_dir"] for r in rows})
    planned = None
    if experiment:
        try:
            from .grid import expand

            planned = len(expand(experiment))
        except Exception:
            planned = None
    max_n = max(c["n_repeats"] for c in cells)
    lines = [f"# Experiment report: `{exp_dir.name}`", "",
             f"Generated by `medseg report` from `results.csv` ({len(rows)} per-case rows of {n_runs} "
             f"finished run(s)" + (f" of {planned} planned" if planned else "") + "). Every number below "
             "is recomputed from `results.csv`; the per-repeat values are in `repeats.csv`.", ""]
    lines += ["## Setup", ""]
    if experiment:
        src = experiment.get("source") or {}
        if src.get("config"):
            ov = " ".join(src.get("overrides") or [])
            lines.append(f"- experiment config: `{src['config']}`" + (f" with overrides `{ov}`" if ov else ""))
        g = experiment.get("grid", {})
        lines.append(f"- grid: models {g.get('models')}, regularizers "
                     f"{[method_label(r['name'], {k: v for k, v in r.items() if k != 'name'}) for r in g.get('regularizers', [])]}"
                     + (f", sweep {g.get('sweep')}" if g.get("sweep") else "") + f", {g.get('repeats')} repeats")
        for label, cfg in (experiment.get("datasets") or {}).items():
            d, m, t = cfg["data"], cfg["model"], cfg["train"]
            lines.append(f"- {label}: slices {d['size'][0]}×{d['size'][1]}, {m['base_channels']} base channels, "
                         f"depth {m['depth']}, {t['epochs']} epochs, batch {t['batch_size']}, Adam lr {t['lr']}, "
                         f"loss {t['loss']}, augmentation {'on' if d['augment'] else 'off'}, "
                         f"empty-case score {cfg['eval']['empty_score']}")
            lines.append(f"  - seeds per repeat: {experiment.get('seeds', {}).get(label)} (repeat r uses the "
                         "same seed for every method)")
    for dataset in datasets:
        name = "split.json" if (exp_dir / "split.json").is_file() else f"split_{dataset}.json"
        lines += _split_text(exp_dir / name)
    seeds_seen = sorted({(r["dataset"], r["repeat"], r["seed"]) for r in repeats})
    lines.append("- seeds in results.csv (dataset, repeat, seed): "
                 + ", ".join(f"({d}, {rep}, {s})" for d, rep, s in seeds_seen))
    lines += ["", "**Aggregation.** Per case: DICE = 2|X∩Y|/(|X|+|Y|) and IoU = |X∩Y|/|X∪Y| on the "
              "case's native grid — one value per CT scan (all its slices stacked, 3D) or per BAGLS "
              "frame; a case where prediction and ground truth are both empty scores the configured "
              "empty-case score (a NaN case is left out). Per repeat: the mean over the test cases. "
              "Per cell: mean ± standard deviation (ddof = 1) over the repeats of the per-repeat means.",
              "",
              f"**Significance.** Paired Wilcoxon signed-rank test (scipy.stats.wilcoxon, two-sided, "
              "zero differences dropped, exact null distribution for small n) of the per-repeat means "
              "of each method against the baseline (`none`) and against Heuristic Dropout "
              "(`heuristic`) of the same dataset and model; repeats are paired by repeat index, i.e. "
              f"the same seed and the same split. With n paired repeats the smallest attainable "
              f"two-sided p is 2/2^n — {fmt(min_p(max_n), 4)} for n = {max_n}"
              + (" — so no comparison can reach p < 0.05 with this many repeats." if min_p(max_n) >= 0.05 else ".")
              + " `—` means not applicable (the reference itself, or it is missing).", ""]

    summary_csv_rows = []
    for dataset in datasets:
        mine = [c for c in cells if c["dataset"] == dataset]
        summary_csv_rows += mine
        (out / f"summary_{dataset}.csv").write_text(_csv(SUMMARY_COLUMNS, ([c[k] for k in SUMMARY_COLUMNS] for c in mine)))
        tables = []
        lines += [f"## {dataset}", ""]
        for metric in METRICS:
            table = summary_markdown(cells, dataset, metric)
            tables.append(f"### {METRIC_NAMES[metric]}\n\n{table}\n")
            panels = []
            for model in sorted({c["model"] for c in mine}):
                sub = [c for c in mine if c["model"] == model]
                labels = [c["method"] for c in sub]
                values = [[r[metric] for r in repeats if r["dataset"] == dataset and r["model"] == model
                           and r["method"] == c["method"]] for c in sub]
                panels.append((model, labels, values))
            figures.boxplot_figure(panels, f"test {METRIC_NAMES[metric]} (mean over cases, per repeat)",
                                   f"{dataset}: {METRIC_NAMES[metric]} over {max_n} repeats per method",
                                   out / f"boxplot_{dataset}_{metric}")
            lines += [f"### {METRIC_NAMES[metric]} (mean ± std over repeats)", "", table, "",
                      f"![{dataset} {METRIC_NAMES[metric]} box plot](boxplot_{dataset}_{metric}.png)", ""]
        (out / f"summary_{dataset}.md").write_text(f"# {dataset}: summary over repeats\n\n" + "\n".join(tables))
        head = [c for c in mine if c["regularizer"] == HEURISTIC and not math.isnan(c.get("dice_p_vs_none", float("nan")))]
        if head:
            lines += ["### Heuristic Dropout against the baseline", ""]
            for c in head:
                lines.append(f"- {c['model']}, {c['method']}: DICE {100 * c['dice_delta_vs_none']:+.2f} points "
                             f"(p = {fmt_p(c['dice_p_vs_none'])}, n = {c['dice_n_pairs_vs_none']}), IoU "
                             f"{100 * c['iou_delta_vs_none']:+.2f} points (p = {fmt_p(c['iou_p_vs_none'])})")
            lines.append("")
        for ab in [a for a in k_ablations(repeats) if a["dataset"] == dataset]:
            stem = f"k_ablation_{dataset}_{ab['model']}_{ab['regularizer']}"
            figures.k_ablation_figure(ab["ks"], ab["dice"], ab["iou"],
                                      f"{dataset}, {ab['model']}: {ab['regularizer']}, k ablation", out / stem)
            table = [[str(k), str(n), cell_text(*mean_std(d)), cell_text(*mean_std(i))]
                     for k, n, d, i in zip(ab["ks"], ab["n"], ab["dice"], ab["iou"])]
            lines += [f"### k ablation: {ab['model']}, {ab['regularizer']}"
                      + (f" ({ab['rest']})" if ab["rest"] else "") + " (paper Fig. 3)", "",
                      _md_table(["k", "repeats", "DICE mean ± std", "IoU mean ± std"], table), "",
                      f"![k ablation]({stem}.png)", ""]
        if qualitative:
            lines += _qualitative_section(exp_dir, out, repeats, dataset, n_slices)
    (out / "summary.csv").write_text(_csv(SUMMARY_COLUMNS, ([c[k] for k in SUMMARY_COLUMNS] for c in summary_csv_rows)))
    co_lines, _ = _coadapt_section(exp_dir, out)
    lines += co_lines
    files = sorted(p.name for p in out.iterdir())
    lines += ["## Files", "", *[f"- `{f}`" for f in files + ["report.md"]], ""]
    return "\n".join(lines)


def _qualitative_section(exp_dir: Path, out: Path, repeats, dataset: str, n_slices: int) -> list[str]:
    lines = []
    for model in sorted({r["model"] for r in repeats if r["dataset"] == dataset}):
        runs: dict[str, str] = {}
        for r in sorted((r for r in repeats if r["dataset"] == dataset and r["model"] == model),
                        key=lambda r: r["repeat"]):
            runs.setdefault(r["method"], r["run_dir"])
        missing = [m for m, rel in runs.items() if not (exp_dir / rel / "checkpoints" / "best.ckpt").is_file()]
        title = f"### Qualitative results: {model} (paper Fig. 2)"
        if missing:
            lines += [title, "", f"Not drawn: the checkpoint of {', '.join(missing)} is missing.", ""]
            continue
        stem = f"qualitative_{dataset}_{model}"
        _, picks = figures.render_qualitative(exp_dir, runs, f"{dataset}, {model}: test slices",
                                              out / stem, n_slices)
        shown = ", ".join(f"{p['case_id']} slice {p['index']} ({p['area']} px)" for p in picks)
        lines += [title, "",
                  "Slice rule: for every test case the slice with the largest ground-truth area "
                  f"(ties: lowest index); the {n_slices} largest of those, one per case. Each method "
                  "is its lowest repeat's best checkpoint; predictions on the native grid, red overlay. "
                  f"Shown: {shown}.", "", f"![qualitative]({stem}.png)", ""]
    return lines
