"""``medseg coadapt`` — the co-adaptation test (paper Fig. 4) on trained runs."""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLE = """examples:
  medseg coadapt runs/demo/unet_none runs/demo/unet_heuristic --out outputs/coadapt --draws 5
  medseg coadapt runs/demo/unet_none runs/demo/unet_heuristic --out outputs/coadapt \\
      --fractions 0,0.25,0.5,0.75 --force

An experiment folder (medseg experiment) as RUN_DIR takes all its finished runs and
writes to DIR/coadapt/, where medseg report finds it.

For each run a random fraction of the feature maps entering the final 1x1 output
convolution is zeroed (one random channel set per draw, nested across fractions) and
the test split is scored as `medseg evaluate` does; fraction 0 reproduces the run's own
test DICE. Writes coadapt.csv (run, dataset, model, regularizer, params, repeat, seed,
fraction, draw, n_dropped, channels, dice, iou) and coadapt.png/svg; `medseg report`
includes DIR/coadapt/ when present."""


def register(sub: argparse._SubParsersAction) -> None:
    from ..cli import HelpFormatter

    p = sub.add_parser("coadapt", help="co-adaptation test: DICE vs fraction of zeroed feature maps",
                       description="Zero a random fraction of the feature maps that enter the final "
                       "output layer of trained models and score the test split again (paper Fig. 4).",
                       epilog=EXAMPLE, formatter_class=HelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR",
                   help="run folders, or an experiment folder (all its finished runs)")
    p.add_argument("--fractions", default=",".join(f"{f:g}" for f in
                                                    (0, .1, .2, .3, .4, .5, .6, .7, .8, .9)),
                   help="comma-separated fractions of feature maps to zero")
    p.add_argument("--draws", type=int, default=3, help="random channel sets per fraction")
    p.add_argument("--seed", type=int, default=0, help="seed of the channel draws")
    p.add_argument("--out", type=Path, default=argparse.SUPPRESS,
                   help="output folder (default for an experiment folder: DIR/coadapt)")
    p.add_argument("--force", action="store_true", help="replace an existing coadapt.csv")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..checks import check_seed
    from ..errors import MedsegError
    from ..experiments.coadapt import parse_fractions, run_coadapt

    try:  # before any run is read or anything written
        check_seed("--seed", args.seed)
    except ValueError as exc:
        raise MedsegError(str(exc)) from None

    path = run_coadapt(args.runs, fractions=parse_fractions(args.fractions), draws=args.draws,
                       seed=args.seed, out=getattr(args, "out", None), force=args.force, progress=not args.no_progress)
    print(f"co-adaptation results: {path} (plot: {path.with_suffix('.png')})")
    return 0
