"""``medseg drops`` — what Heuristic Dropout drops in a trained run."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

EXAMPLE = """examples:
  medseg drops runs/demo/unet_heuristic
  medseg drops runs/demo/unet_heuristic --split test --checkpoint last

Runs the network over every slice of the split with only the Heuristic Dropout slots
in training mode (BatchNorm and the rest in eval mode, weights unchanged) and writes
RUN/drops.csv — one row per slot: slot, channels, spatial, dropped_per_sample,
dead_fraction (share of dropped channels that were constant: a no-op drop),
low_variance_fraction, entropy_/variance_dropped/kept, selection_entropy (0 = always
the same channels, 1 = all equally often) — and RUN/drops.png (each channel's
selection frequency per slot). Other splits write drops_<split>.csv/.png."""


def register(sub: argparse._SubParsersAction) -> None:
    from ..cli import HelpFormatter

    p = sub.add_parser("drops", help="what Heuristic Dropout drops in a trained run, slot by slot",
                       description="Per-slot statistics of Heuristic Dropout's channel selection in a "
                       "trained run (how many drops hit constant channels).",
                       epilog=EXAMPLE, formatter_class=HelpFormatter)
    p.add_argument("run_dir", type=Path, help="run folder written by medseg train (regularizer heuristic)")
    p.add_argument("--split", choices=("val", "test", "train"), default="val")
    p.add_argument("--checkpoint", default="best", help="best | last | PATH")
    p.add_argument("--force", action="store_true", help="replace an existing drops.csv/png")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import MedsegError
    from ..experiments.drops import read_drops, run_drops
    from ..io import folder_lock

    if not args.run_dir.is_dir():
        raise MedsegError(f"{args.run_dir}: run folder not found")
    with folder_lock(args.run_dir, "run"):  # not while a train --resume or evaluate writes it
        path = run_drops(args.run_dir, args.split, args.checkpoint, force=args.force,
                         progress=not args.no_progress)
    print(f"{'slot':<28} {'C':>4} {'dropped':>8} {'constant':>9} {'sel. entropy':>13}")
    for r in read_drops(path):
        dead = "—" if math.isnan(r["dead_fraction"]) else f"{100 * r['dead_fraction']:.0f} %"
        print(f"{r['slot']:<28} {r['channels']:>4} {r['dropped_per_sample']:>8.2f} {dead:>9} "
              f"{r['selection_entropy']:>13.2f}")
    print(f"drop statistics: {path} (plot: {path.with_suffix('.png')})")
    return 0
