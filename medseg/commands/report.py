"""``medseg report`` — tables, significance tests and figures of an experiment folder."""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLE = """examples:
  medseg report experiments/pancreas_comparison
  medseg report experiments/pancreas_comparison --force --slices 3
  medseg report experiments/k_ablation --no-qualitative

Writes DIR/report/: report.md (embeds every figure; states data, split, seeds and the
aggregation), summary_<dataset>.md|csv (rows = methods, columns = models: mean ± std over
repeats of the per-repeat mean DICE / IoU, Wilcoxon p against none and heuristic),
repeats.csv, boxplot_<dataset>_<dice|iou>.png|svg, k_ablation_*.png|svg when k was swept,
coadapt_<dataset>.png|svg when DIR/coadapt/coadapt.csv exists (medseg coadapt DIR), and
qualitative_<dataset>_<model>.png|svg. Every number is recomputed from DIR/results.csv."""


def register(sub: argparse._SubParsersAction) -> None:
    from ..cli import HelpFormatter

    p = sub.add_parser("report", help="summary tables, Wilcoxon tests and figures of an experiment",
                       description="Recompute an experiment's results from DIR/results.csv: the summary "
                       "table per dataset, box plots over repeats, paired Wilcoxon signed-rank tests "
                       "against the baseline and Heuristic Dropout, the k ablation, the co-adaptation "
                       "test and a qualitative figure; write them to DIR/report/.",
                       epilog=EXAMPLE, formatter_class=HelpFormatter)
    p.add_argument("dir", type=Path, metavar="DIR", help="experiment folder (from medseg experiment)")
    p.add_argument("--force", action="store_true", help="replace an existing DIR/report/")
    p.add_argument("--slices", type=int, default=4, help="test slices in the qualitative figure")
    p.add_argument("--no-qualitative", action="store_true",
                   help="skip the qualitative figure (it loads every method's checkpoint)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import MedsegError
    from ..experiments.report import write_report

    if args.slices < 1:
        raise MedsegError("--slices must be >= 1")
    out = write_report(args.dir, force=args.force, qualitative=not args.no_qualitative,
                       n_slices=args.slices)
    print(f"report: {out / 'report.md'}")
    return 0
