"""``medseg evaluate`` — recompute a run's metrics files from a checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLE = """examples:
  medseg evaluate runs/demo/unet_none
  medseg evaluate runs/demo/unet_heuristic --split val --checkpoint last

--split test rewrites metrics.json and cases.csv; other splits write
metrics_<split>.json and cases_<split>.csv (train gives the train/test gap).
A dataset with several labels prints the mean over labels, then one line per label."""


def register(sub: argparse._SubParsersAction) -> None:
    from ..cli import HelpFormatter

    p = sub.add_parser("evaluate", help="score a run's checkpoint on a split",
                       description="Score a run's checkpoint per case (DICE, IoU on the native grid) "
                       "and write metrics/cases files. The checkpoint is opened with "
                       "weights_only=True.", epilog=EXAMPLE, formatter_class=HelpFormatter)
    p.add_argument("run_dir", type=Path, help="run folder written by medseg train")
    p.add_argument("--split", choices=("test", "val", "train"), default="test")
    p.add_argument("--checkpoint", default="best", help="best | last | PATH")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import MedsegError
    from ..io import folder_lock
    from ..training.metrics import summary_line
    from ..training.run import evaluate_run

    if not args.run_dir.is_dir():
        raise MedsegError(f"{args.run_dir}: run folder not found")
    with folder_lock(args.run_dir, "run"):  # not while a train --resume writes it
        s = evaluate_run(args.run_dir, split=args.split, checkpoint=args.checkpoint,
                         progress=not args.no_progress)
    print(f"{args.split} " + summary_line(s))
    for name, part in (s.get("labels") or {}).items():  # several labels: the headline is their mean
        print(f"  {name}: " + summary_line({"distance_unit": s.get("distance_unit", "mm"),
                                            "n_cases": s["n_cases"], **part}))
    return 0
