"""``medseg report`` — tables, statistics and figures of an experiment folder."""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLE = """examples:
  medseg experiment --config configs/experiments/cpu/pancreas_comparison.yaml \\
      --out experiments/quick grid.regularizers=[none,heuristic] grid.repeats=2 train.epochs=1
  medseg report experiments/quick
  medseg report experiments/quick --force --slices 3 --failed-below 0.2
  medseg report experiments/quick --force --no-qualitative

Writes DIR/report/: report.md (embeds every figure; states data, split, seeds, the
aggregation and the tests), summary_<dataset>.md|csv and summary.csv (rows = methods ×
models: mean ± std over repeats of the per-repeat mean DICE / IoU / HD95 / NSD, also
without the runs that did not converge; Wilcoxon p over repeats against none and
heuristic; <metric>_delta with its 95 % bootstrap CI), comparisons.csv (every paired
comparison: mean difference over case pairs, bootstrap CI, Wilcoxon over cases and over
repeats, one sentence), runs.csv, repeats.csv, boxplot_<dataset>_<metric>.png|svg,
k_ablation_*.png|svg when k was swept, coadapt_<dataset>.png|svg when
DIR/coadapt/coadapt.csv exists (medseg coadapt DIR), and qualitative_<dataset>_<model>.png|svg.
Every number is recomputed from DIR/results.csv. A run whose best validation DICE is below
--failed-below (default: the experiment's report.failed_below, else 0.1) is listed as not
converged and marked in the box plots; it stays in every mean.
A dataset with several labels (results.csv's label column): all of the above is of the
mean over labels; its section adds a table per label (mean ± std, Δ vs none with CI),
boxplot_<dataset>_labels_<metric>.png|svg (a panel per label) and labels_*.csv."""


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    from ..cli import HelpFormatter

    p = sub.add_parser("report", help="summary tables, paired statistics and figures of an experiment",
                       description="Recompute an experiment's results from DIR/results.csv: the summary "
                       "table per dataset (DICE, IoU, HD95, NSD), box plots over repeats, paired "
                       "differences with bootstrap CIs and Wilcoxon signed-rank tests against the "
                       "baseline and Heuristic Dropout, the runs that did not converge, the k ablation, "
                       "the co-adaptation test and a qualitative figure; write them to DIR/report/.",
                       epilog=EXAMPLE, formatter_class=HelpFormatter)
    p.add_argument("dir", type=Path, metavar="DIR", help="experiment folder (from medseg experiment)")
    p.add_argument("--force", action="store_true", help="replace an existing DIR/report/")
    p.add_argument("--slices", type=int, default=4, help="test slices in the qualitative figure")
    p.add_argument("--no-qualitative", action="store_true",
                   help="skip the qualitative figure (it loads every method's checkpoint)")
    p.add_argument("--failed-below", type=_fraction, default=None, metavar="X",
                   help="a run whose best validation DICE is below X did not converge (default: the "
                   "experiment's report.failed_below, else 0.1)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import MedsegError
    from ..experiments.report import write_report

    if args.slices < 1:
        raise MedsegError("--slices must be >= 1")
    out = write_report(args.dir, force=args.force, qualitative=not args.no_qualitative,
                       n_slices=args.slices, failed_below=args.failed_below)
    print(f"report: {out / 'report.md'}")
    return 0
