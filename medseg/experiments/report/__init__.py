"""``medseg report DIR``: tables, statistics and figures from ``DIR/results.csv``.

Everything is recomputed from ``DIR/results.csv`` (plus ``DIR/coadapt/coadapt.csv``
for the co-adaptation test, the run checkpoints for the qualitative figure, and a
run's ``logs/metrics.csv`` for its best validation DICE where ``results.csv`` lacks
it). The pieces, each in its own module:

* :mod:`.statistics` — per-run / per-repeat means, mean ± std per cell, paired
  differences with bootstrap CIs, Wilcoxon over cases and over repeats, the runs
  that did not converge (definitions in its docstring);
* :mod:`.tables` — number formats, Markdown tables, one sentence per comparison, CSV;
* :mod:`.plots` — which figures are drawn (:mod:`medseg.experiments.figures` draws);
* :mod:`.markdown` — the sections of ``report.md`` (and the hook for extra sections).

``DIR/report/`` holds ``report.md`` (embeds every figure; states data, split, seeds,
the aggregation and the tests), ``summary_<dataset>.md`` / ``.csv`` and ``summary.csv``
(rows = methods × models; mean ± std of DICE, IoU, HD95, NSD, also without failed runs;
Wilcoxon p over repeats; ``<metric>_delta`` / ``_ci_low`` / ``_ci_high`` against
``none`` and ``…_vs_heuristic``), ``comparisons.csv`` (every paired comparison with its
sentence), ``repeats.csv`` and ``runs.csv`` (the values behind every number), box plots
``boxplot_<dataset>_<dice|iou|hd95|nsd>.png|svg`` (paper Fig. 1; × marks a repeat with a
run that did not converge), ``k_ablation_*.png|svg`` when a regularizer's ``k`` was
swept (Fig. 3), ``coadapt_<dataset>.png|svg`` when ``DIR/coadapt/coadapt.csv`` exists
(Fig. 4), and ``qualitative_<dataset>_<model>.png|svg`` (Fig. 2, rule in :mod:`..figures`).

Several labels (an nnU-Net dataset with more than one foreground label; ``results.csv``
has a headline row per case — ``label`` "", the mean over the labels — and one row per
case and label): every table, figure, test and CSV file above is of the headline, so it
reads as for a binary dataset; each such dataset's section then ends with *Per label*:
one table per label (model × method: mean ± std over repeats and the paired Δ against
``none`` with its 95 % bootstrap CI, per metric) and one box plot per metric with a
panel per label, ``boxplot_<dataset>_labels_<metric>.png|svg``; ``summary_<dataset>.md``
ends with the same tables, and ``labels_summary.csv``, ``labels_repeats.csv`` and
``labels_comparisons.csv`` hold the per-label numbers (the headline files' columns
after a ``label`` column). A binary experiment writes none of these: its report is
unchanged.

``report.failed_below`` (default 0.1) comes from the experiment's ``report:`` mapping
in ``DIR/experiment.yaml``; ``write_report(failed_below=…)`` (``medseg report
--failed-below``) overrides it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ...errors import MedsegError
from ...io import MARKER, atomic_dir, mark_folder
from ..results import FILENAME, best_val_dice, read_results
from . import curve, markdown, plots, tuned
from .folder import check_replaceable_report
from .statistics import (BASELINE, DEFAULT_FAILED_BELOW, HEURISTIC, METRICS, Analysis, Comparison,
                         analyse, bootstrap_ci, k_ablations, mean_std, min_p, paired_wilcoxon, per_repeat,
                         per_run, summarize)
from .tables import (COMPARISON_COLUMNS, LABEL_REPEAT_COLUMNS, LABEL_SUMMARY_COLUMNS, REPEAT_COLUMNS,
                     RUN_COLUMNS, SUMMARY_COLUMNS, comparisons_csv, label_comparisons_csv, label_markdown,
                     metric_name, summary_markdown, table_csv)

__all__ = ["write_report", "analyse", "Analysis", "Comparison", "bootstrap_ci", "min_p", "paired_wilcoxon",
           "per_repeat", "per_run", "summarize", "k_ablations", "mean_std", "BASELINE", "HEURISTIC", "METRICS",
           "SUMMARY_COLUMNS", "REPEAT_COLUMNS", "RUN_COLUMNS", "COMPARISON_COLUMNS"]


def _load_yaml(path: Path) -> Any:
    import yaml

    try:
        return yaml.safe_load(path.read_text()) if path.is_file() else None
    except Exception:
        return None


def _planned(experiment: Any) -> int | None:
    if not experiment:
        return None
    try:
        from ..grid import expand

        return len(expand(experiment))
    except Exception:
        return None


def failed_threshold(experiment: Any, override: float | None) -> float:
    """``override`` if given, else the experiment's ``report.failed_below``, else the default."""
    if override is not None:
        return float(override)
    report = (experiment or {}).get("report") or {}
    return float(report.get("failed_below", DEFAULT_FAILED_BELOW))


def write_tables(out: Path, a: Analysis) -> None:
    """The CSV files and the per-dataset summary Markdown files."""
    (out / "runs.csv").write_text(table_csv(RUN_COLUMNS, a.runs))
    (out / "repeats.csv").write_text(table_csv(REPEAT_COLUMNS, a.repeats))
    (out / "summary.csv").write_text(table_csv(SUMMARY_COLUMNS, a.cells))
    (out / "comparisons.csv").write_text(comparisons_csv(a.comparisons))
    for dataset in a.datasets:
        mine = [c for c in a.cells if c["dataset"] == dataset]
        (out / f"summary_{dataset}.csv").write_text(table_csv(SUMMARY_COLUMNS, mine))
        failed = any(c["failed_runs"] for c in mine)
        tables = [f"### {metric_name(m, dataset)}\n\n{summary_markdown(a.cells, dataset, m, failed)}\n" for m in METRICS]
        labels = a.labels_of(dataset)
        if labels:  # several labels: the headline is the mean over labels, then each label
            tables.insert(0, "Headline: per case the mean over the labels.\n")
            tables += ["## Per label\n"] + [f"### {name}\n\n{label_markdown(a.labels[name].cells, dataset)}\n"
                                            for name in labels]
        (out / f"summary_{dataset}.md").write_text(f"# {dataset}: summary over repeats\n\n" + "\n".join(tables))
    if a.labels:
        (out / "labels_summary.csv").write_text(table_csv(
            LABEL_SUMMARY_COLUMNS, ({"label": n, **c} for n, la in a.labels.items() for c in la.cells)))
        (out / "labels_repeats.csv").write_text(table_csv(
            LABEL_REPEAT_COLUMNS, ({"label": n, **r} for n, la in a.labels.items() for r in la.repeats)))
        (out / "labels_comparisons.csv").write_text(label_comparisons_csv(
            {n: la.comparisons for n, la in a.labels.items()}))


def _document(exp_dir: Path, out: Path, a: Analysis, experiment: Any, qualitative: bool, n_slices: int,
              extra_sections: Sequence[markdown.Section]) -> str:
    """Draw the figures and assemble ``report.md``."""
    tune = tuned.tuning_of(experiment, exp_dir / "experiment.yaml")
    if tune:  # grid.tune: the chosen candidates' analysis, also the learning curve's
        ta, choices = tuned.tuned_analysis(a, tune)
        tuned.write_files(out, ta, choices)
    lines = markdown.header(exp_dir, a, _planned(experiment)) + markdown.setup(exp_dir, a, experiment)
    lines += markdown.methods(a) + markdown.failed_section(a)
    for dataset in a.datasets:
        lines += markdown.dataset_section(a, dataset, plots.boxplots(out, a, dataset))
        lines += markdown.comparisons_section(a, dataset)
        lines += markdown.labels_section(a, dataset, plots.label_boxplots(out, a, dataset))
        if tune:
            lines += tuned.section(ta, choices, tune, dataset)
        lines += curve.section(out, ta if tune else a, dataset)
        for ab in (ab for ab in k_ablations(a.repeats) if ab["dataset"] == dataset):
            lines += markdown.k_ablation_section(ab, plots.k_ablation(out, ab))
        if qualitative:
            lines += markdown.qualitative_section(plots.qualitative(exp_dir, out, a, dataset, n_slices), n_slices)
    lines += markdown.coadapt_section(plots.coadapt(exp_dir, out))
    for section in extra_sections:  # optional sections (see medseg.experiments.report.markdown)
        lines += section(exp_dir, out)
    return "\n".join(lines + markdown.files_section(out))


def write_report(exp_dir: str | Path, *, force: bool = False, qualitative: bool = True, n_slices: int = 4,
                 failed_below: float | None = None,
                 extra_sections: Sequence[markdown.Section] | None = None) -> Path:
    """Write ``DIR/report/`` (see the module docstring), staged and renamed; return its path."""
    exp_dir = Path(exp_dir)
    results_path = exp_dir / FILENAME
    if not results_path.is_file():
        raise MedsegError(f"{results_path}: no results yet (run `medseg experiment` first)")
    rows = read_results(results_path)
    if not rows:
        raise MedsegError(f"{results_path}: no finished runs yet")
    target = exp_dir / "report"
    if force:
        check_replaceable_report(target)  # only a report medseg made, before any work
    elif target.exists() or target.is_symlink():
        raise MedsegError(f"{target}: report exists (use --force to replace it)")
    experiment = _load_yaml(exp_dir / "experiment.yaml")
    if experiment is not None and (not isinstance(experiment, dict)
                                   or not isinstance(experiment.get("grid", {}), dict)):
        raise MedsegError(f"{exp_dir / 'experiment.yaml'}: not a medseg experiment file (damaged?)")
    tuned.tuning_of(experiment, exp_dir / "experiment.yaml")  # checked before any work
    a = analyse(rows, failed_threshold(experiment, failed_below), best_val=lambda d: best_val_dice(exp_dir / d))
    sections = markdown.EXTRA_SECTIONS if extra_sections is None else tuple(extra_sections)
    with atomic_dir(target) as out:
        write_tables(out, a)
        (out / "report.md").write_text(_document(exp_dir, out, a, experiment, qualitative, n_slices, sections))
        # medseg's, listing what it holds: a later --force replaces exactly that
        mark_folder(out, "report", files=sorted(p.name for p in out.iterdir() if p.name != MARKER))
    return target
