"""The numbers of ``medseg report``, recomputed from the rows of ``results.csv``.

* **per run** (one run folder: a repeat, and a fold with cross-validation): the mean
  over its test cases of each metric (NaN cases left out) and its best validation
  DICE; a run whose best validation DICE is below ``failed_below`` *did not
  converge* (:func:`failed_runs`);
* **per repeat**: the mean over the test cases of all folds of the repeat (one
  run without cross-validation: the run's ``metrics.json`` means);
* **per cell** (dataset × model × method): mean and std (ddof=1; undefined for one
  repeat) of the per-repeat means, and the Wilcoxon p over repeats against each
  reference (:func:`summarize`);
* **paired comparisons** (:func:`compare`) of a method with a reference (``none``,
  ``heuristic``) of the same dataset and model: pairs are the same case in the
  same repeat and fold. The paired mean difference (method − reference) with a 95 %
  percentile bootstrap CI (``scipy.stats.bootstrap`` over the per-pair differences in
  (case, repeat, fold) order, :data:`N_RESAMPLES` resamples, seeded with
  :data:`BOOTSTRAP_SEED`; the pairs of one case in different repeats are resampled as
  independent, so the CI reflects case and seed variation together), the Wilcoxon
  signed-rank test over the per-case means (each case's mean over the repeats, so
  n = test cases) and over the per-repeat means (n = repeats).

Several labels: every number above is computed on the *headline* rows of
``results.csv`` (``label`` "": per case the mean over the labels), and the same
analysis is repeated on each label's rows alone (:attr:`Analysis.labels`; the runs
that did not converge are the same, judged by the run's best validation DICE).

Wilcoxon: ``scipy.stats.wilcoxon``, two-sided, zero differences dropped,
``method="auto"`` (the exact null distribution for small n). With n pairs the
smallest attainable two-sided p is 2/2^n (:func:`min_p`; 0.0625 for n = 5).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from ...errors import MedsegError
from ..grid import method_label
from ..results import FILENAME, LABEL, headline, labels_of

BASELINE = "none"
HEURISTIC = "heuristic"
REFERENCES = (BASELINE, HEURISTIC)
METRICS = ("dice", "iou", "hd95", "nsd")
#: metrics where a smaller value is better (distances)
LOWER_IS_BETTER = frozenset({"hd95"})
N_RESAMPLES = 9999
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95
DEFAULT_FAILED_BELOW = 0.1


def nanmean(values: Iterable[float]) -> float:
    vs = [v for v in values if not math.isnan(v)]
    return float(np.mean(vs)) if vs else float("nan")


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    vs = [v for v in values if not math.isnan(v)]
    if not vs:
        return float("nan"), float("nan")
    return float(np.mean(vs)), (float(np.std(vs, ddof=1)) if len(vs) > 1 else float("nan"))


def min_p(n: int) -> float:
    """Smallest attainable two-sided exact Wilcoxon p with n pairs: 2 / 2**n."""
    return 2.0 / 2 ** n


def method_order(regularizer: str, params_json: str) -> tuple:
    try:
        from ...regularizers.catalogue import ORDER
    except Exception:  # pragma: no cover - catalogue unavailable
        ORDER = [BASELINE, HEURISTIC]
    params = json.loads(params_json) if params_json else {}

    def sortable(v: Any) -> tuple:
        return (0, float(v), "") if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, 0.0, str(v))

    rank = ORDER.index(regularizer) if regularizer in ORDER else len(ORDER)
    return (rank, regularizer, [(k, sortable(v)) for k, v in sorted(params.items())])


def _cell_of(r: Mapping[str, Any]) -> tuple:
    return (r["dataset"], r["model"], r["regularizer"], r["params"])


def _sort_key(r: Mapping[str, Any]) -> tuple:
    return (r["dataset"], r["model"], method_order(r["regularizer"], r["params"]), r["repeat"], r.get("fold", 0))


def _group(rows: Iterable[Mapping[str, Any]], key: Callable[[Mapping[str, Any]], Any]) -> dict[Any, list]:
    groups: dict[Any, list] = defaultdict(list)
    for r in rows:
        groups[key(r)].append(r)
    return groups


# --------------------------------------------------------------------------- runs and repeats


def per_run(rows: list[Mapping[str, Any]], best_val: Callable[[str], float] | None = None) -> list[dict[str, Any]]:
    """One record per run folder: its case means and ``best_val_dice`` (the column, or
    ``best_val(run_dir)`` where the column is NaN, e.g. a results file from before it)."""
    out = []
    for run_dir, rs in _group(rows, lambda r: r["run_dir"]).items():
        keys = {(*_cell_of(r), r["repeat"], r.get("fold", 0), r["seed"]) for r in rs}
        if len(keys) != 1:
            raise MedsegError(f"{FILENAME}: run {run_dir} has rows of several methods, repeats, folds or seeds")
        dataset, model, reg, params, repeat, fold, seed = keys.pop()
        best = nanmean(r.get("best_val_dice", float("nan")) for r in rs)
        if math.isnan(best) and best_val is not None:
            best = best_val(run_dir)
        rec = {"dataset": dataset, "model": model, "regularizer": reg, "params": params,
               "method": method_label(reg, params), "repeat": repeat, "fold": fold, "seed": seed,
               "run_dir": run_dir, "n_cases": len(rs), "best_val_dice": best}
        rec.update({m: nanmean(r.get(m, float("nan")) for r in rs) for m in METRICS})
        out.append(rec)
    return sorted(out, key=_sort_key)


def failed_runs(runs: Iterable[Mapping[str, Any]], failed_below: float) -> list[Mapping[str, Any]]:
    """Runs whose best validation DICE is below ``failed_below`` (unknown = NaN: not failed)."""
    return [r for r in runs if r["best_val_dice"] < failed_below]


def per_repeat(rows: list[Mapping[str, Any]], failed: Iterable[str] = ()) -> list[dict[str, Any]]:
    """One record per dataset × model × method × repeat: the means over the test cases of
    all its folds; ``failed`` = how many of its runs are in the run folders ``failed``."""
    failed = set(failed)
    out = []
    for (dataset, model, reg, params, repeat), rs in _group(rows, lambda r: (*_cell_of(r), r["repeat"])).items():
        seeds = {r["seed"] for r in rs}
        by_fold = _group(rs, lambda r: r.get("fold", 0))
        if len(seeds) != 1 or any(len({r["run_dir"] for r in f}) != 1 for f in by_fold.values()):
            raise MedsegError(f"{FILENAME}: {dataset}/{model}/{method_label(reg, params)} repeat {repeat} "
                              "has rows of several runs or seeds")
        run_dirs = sorted({r["run_dir"] for r in rs})
        rec = {"dataset": dataset, "model": model, "regularizer": reg, "params": params,
               "method": method_label(reg, params), "repeat": repeat, "seed": seeds.pop(),
               "folds": len(by_fold), "run_dir": ";".join(run_dirs), "n_cases": len(rs),
               "failed": sum(d in failed for d in run_dirs)}
        rec.update({m: nanmean(r.get(m, float("nan")) for r in rs) for m in METRICS})
        out.append(rec)
    return sorted(out, key=_sort_key)


# --------------------------------------------------------------------------- tests


def paired_wilcoxon(a: Mapping[Any, float], b: Mapping[Any, float]) -> tuple[float, int]:
    """Two-sided Wilcoxon signed-rank p of a vs b over the keys both have; (p, n pairs)."""
    from scipy.stats import wilcoxon

    common = sorted(k for k in set(a) & set(b) if not (math.isnan(a[k]) or math.isnan(b[k])))
    n = len(common)
    if n < 2:
        return float("nan"), n
    x = np.array([a[k] for k in common])
    y = np.array([b[k] for k in common])
    if np.all(x == y):
        return 1.0, n
    return float(wilcoxon(x, y, zero_method="wilcox", alternative="two-sided", method="auto").pvalue), n


def bootstrap_ci(differences: Iterable[float], n_resamples: int = N_RESAMPLES,
                 seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """95 % percentile bootstrap CI of the mean of paired differences (NaN for < 2 pairs;
    (d, d) when every difference is d, where every resample has the same mean)."""
    from scipy.stats import bootstrap

    d = np.asarray(list(differences), dtype=np.float64)
    if d.size < 2:
        return float("nan"), float("nan")
    if np.all(d == d[0]):
        return float(d[0]), float(d[0])
    res = bootstrap((d,), np.mean, n_resamples=n_resamples, confidence_level=CONFIDENCE,
                    method="percentile", rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


@dataclass
class Comparison:
    """A method against a reference on one metric (dataset and model fixed)."""

    dataset: str
    model: str
    method: str
    reference: str        # the reference's method label
    against: str          # which reference: "none" or "heuristic"
    metric: str
    n_pairs: int
    delta: float
    ci_low: float
    ci_high: float
    n_cases: int
    p_cases: float
    n_repeats: int
    p_repeats: float

    @property
    def spans_zero(self) -> bool:
        return not (self.ci_low > 0 or self.ci_high < 0)

    def as_row(self) -> dict[str, Any]:
        row = dict(self.__dict__)
        row.update(min_p_cases=min_p(self.n_cases), min_p_repeats=min_p(self.n_repeats),
                   n_resamples=N_RESAMPLES, bootstrap_seed=BOOTSTRAP_SEED,
                   lower_is_better=self.metric in LOWER_IS_BETTER)
        return row


def _case_values(rows: Iterable[Mapping[str, Any]], metric: str) -> dict[tuple, float]:
    """(case, repeat, fold) → value, NaN cases left out."""
    return {(r["case_id"], r["repeat"], r.get("fold", 0)): r[metric] for r in rows if not math.isnan(r[metric])}


def compare(mine: list[Mapping[str, Any]], ref: list[Mapping[str, Any]], metric: str,
            repeat_means: tuple[Mapping[int, float], Mapping[int, float]]) -> dict[str, Any]:
    """Paired statistics of method rows ``mine`` against reference rows ``ref`` (one
    dataset and model); ``repeat_means``: (mine, ref) per-repeat means for the test over repeats."""
    a, b = _case_values(mine, metric), _case_values(ref, metric)
    pairs = sorted(set(a) & set(b))
    d = [a[k] - b[k] for k in pairs]
    by_case_a, by_case_b = defaultdict(list), defaultdict(list)
    for k in pairs:
        by_case_a[k[0]].append(a[k])
        by_case_b[k[0]].append(b[k])
    p_cases, n_cases = paired_wilcoxon({c: float(np.mean(v)) for c, v in by_case_a.items()},
                                       {c: float(np.mean(v)) for c, v in by_case_b.items()})
    p_repeats, n_repeats = paired_wilcoxon(*repeat_means)
    low, high = bootstrap_ci(d)
    return {"n_pairs": len(d), "delta": float(np.mean(d)) if d else float("nan"), "ci_low": low,
            "ci_high": high, "n_cases": n_cases, "p_cases": p_cases,
            "n_repeats": n_repeats, "p_repeats": p_repeats}


# --------------------------------------------------------------------------- cells


def reference_cell(cells: Iterable[tuple], key: tuple, reference: str) -> tuple | None:
    """The cell of ``reference`` that ``key`` (dataset, model, regularizer, params) is compared with:
    the same dataset, model and non-regularizer sweep values ("train.lr": …) and, if the
    reference was run with several parameter sets, its defaults."""
    dataset, model, _, params = key
    sweep = {k: v for k, v in json.loads(params).items() if "." in k}
    found = [c for c in cells if c[0] == dataset and c[1] == model and c[2] == reference
             and {k: v for k, v in json.loads(c[3]).items() if "." in k} == sweep]
    if len(found) == 1:
        return found[0]
    plain = [c for c in found if not any("." not in k for k in json.loads(c[3]))]
    return plain[0] if len(plain) == 1 else None


def summarize(repeats: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One record per dataset × model × method: mean/std over repeats and the Wilcoxon p
    over repeats against each reference, per metric."""
    cells = _group(repeats, _cell_of)
    out = []
    for key, rs in cells.items():
        dataset, model, reg, params = key
        rec: dict[str, Any] = {"dataset": dataset, "model": model, "method": method_label(reg, params),
                               "regularizer": reg, "params": params, "n_repeats": len(rs),
                               "repeats": [r["repeat"] for r in rs], "seeds": [r["seed"] for r in rs],
                               "failed_runs": sum(r.get("failed", 0) for r in rs)}
        for m in METRICS:
            rec[f"{m}_mean"], rec[f"{m}_std"] = mean_std([r[m] for r in rs])
        for ref_name in REFERENCES:
            ref = reference_cell(cells, key, ref_name)
            for m in METRICS:
                p, n = float("nan"), 0
                if ref is not None and ref != key:
                    p, n = paired_wilcoxon({r["repeat"]: r[m] for r in rs}, {r["repeat"]: r[m] for r in cells[ref]})
                rec[f"{m}_p_vs_{ref_name}"], rec[f"{m}_n_pairs_vs_{ref_name}"] = p, n
        out.append(rec)
    out.sort(key=lambda r: (r["dataset"], method_order(r["regularizer"], r["params"]), r["model"]))
    return out


def comparisons(rows: list[Mapping[str, Any]], repeats: list[Mapping[str, Any]]) -> list[Comparison]:
    """Every method against ``none`` and ``heuristic`` (where present) on every metric."""
    rows_by_cell = _group(rows, _cell_of)
    repeats_by_cell = _group(repeats, _cell_of)
    out = []
    for key in sorted(rows_by_cell, key=lambda k: (k[0], k[1], method_order(k[2], k[3]))):
        for ref_name in REFERENCES:
            ref = reference_cell(rows_by_cell, key, ref_name)
            if ref is None or ref == key:
                continue
            for m in METRICS:
                means = ({r["repeat"]: r[m] for r in repeats_by_cell[key]},
                         {r["repeat"]: r[m] for r in repeats_by_cell[ref]})
                stats = compare(rows_by_cell[key], rows_by_cell[ref], m, means)
                out.append(Comparison(key[0], key[1], method_label(key[2], key[3]),
                                      method_label(ref[2], ref[3]), ref_name, m, **stats))
    return out


def attach_deltas(cells: list[dict[str, Any]], comps: Iterable[Comparison]) -> None:
    """Add the paired differences to the cells: ``<metric>_delta``, ``_ci_low``, ``_ci_high``
    against ``none`` and the same with ``_vs_heuristic`` (NaN where not compared)."""
    found = {(c.dataset, c.model, c.method, c.against, c.metric): c for c in comps}
    for cell in cells:
        for ref_name in REFERENCES:
            suffix = "" if ref_name == BASELINE else f"_vs_{ref_name}"
            for m in METRICS:
                c = found.get((cell["dataset"], cell["model"], cell["method"], ref_name, m))
                values = (c.delta, c.ci_low, c.ci_high) if c is not None else (float("nan"),) * 3
                for name, v in zip(("delta", "delta_ci_low", "delta_ci_high"), values):
                    cell[f"{m}_{name}{suffix}"] = v


def attach_without_failed(cells: list[dict[str, Any]], converged: list[Mapping[str, Any]]) -> None:
    """Add ``<metric>_mean_without_failed`` / ``_std_without_failed`` from the cells
    ``converged`` (computed without the runs that did not converge; NaN where none is left)."""
    by = {(c["dataset"], c["model"], c["method"]): c for c in converged}
    for cell in cells:
        ok = by.get((cell["dataset"], cell["model"], cell["method"]), {})
        for m in METRICS:
            for s in ("mean", "std"):
                cell[f"{m}_{s}_without_failed"] = ok.get(f"{m}_{s}", float("nan"))


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


# --------------------------------------------------------------------------- everything


@dataclass
class Analysis:
    """Every number of a report (see the module docstring)."""

    rows: list[Mapping[str, Any]]
    runs: list[dict[str, Any]]
    failed: list[Mapping[str, Any]]
    failed_below: float
    repeats: list[dict[str, Any]]
    cells: list[dict[str, Any]]
    comparisons: list[Comparison]
    #: several labels: label name → the same analysis on that label's rows alone
    labels: dict[str, "Analysis"] = field(default_factory=dict)

    @property
    def datasets(self) -> list[str]:
        return sorted({r["dataset"] for r in self.repeats})

    def labels_of(self, dataset: str) -> list[str]:
        """The labels analysed for ``dataset`` ([] for a binary dataset)."""
        return [name for name, la in self.labels.items() if dataset in la.datasets]


def analyse(rows: list[Mapping[str, Any]], failed_below: float = DEFAULT_FAILED_BELOW,
            best_val: Callable[[str], float] | None = None) -> Analysis:
    """Runs, failed runs, repeats, cells (with deltas and means without failed runs), comparisons;
    of the headline rows, and with several labels the same per label (:attr:`Analysis.labels`)."""
    labelled = [r for r in rows if r.get(LABEL)]
    rows = headline(rows)
    if not rows and labelled:
        raise MedsegError(f"{FILENAME}: labelled rows without their headline rows (label \"\")")
    a = _analyse(rows, failed_below, best_val)
    a.labels = {name: _analyse([r for r in labelled if r[LABEL] == name], failed_below, best_val)
                for name in labels_of(labelled)}
    return a


def _analyse(rows: list[Mapping[str, Any]], failed_below: float,
             best_val: Callable[[str], float] | None) -> Analysis:
    runs = per_run(rows, best_val)
    failed = failed_runs(runs, failed_below)
    bad = {r["run_dir"] for r in failed}
    for r in runs:
        r["failed"] = r["run_dir"] in bad
    repeats = per_repeat(rows, bad)
    cells = summarize(repeats)
    comps = comparisons(rows, repeats)
    attach_deltas(cells, comps)
    converged = [r for r in rows if r["run_dir"] not in bad]
    attach_without_failed(cells, summarize(per_repeat(converged)) if converged else [])
    return Analysis(rows, runs, failed, failed_below, repeats, cells, comps)
