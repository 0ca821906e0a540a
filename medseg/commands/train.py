"""``medseg train`` — train one model and evaluate it on the test split."""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLE = """examples:
  medseg train --config configs/cpu/pancreas_unet.yaml      # -> runs/pancreas_unet_none_seed0
  medseg train --config configs/cpu/pancreas_unet.yaml regularizer.name=heuristic regularizer.k=3 train.epochs=2
  medseg train --config configs/cpu/pancreas_unet.yaml --out runs/demo/unet_none --resume

The run folder holds config.yaml (resolved), split.json, checkpoints/best.ckpt and
last.ckpt, logs/ (CSV + TensorBoard), metrics.json and cases.csv."""


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="run config (YAML), e.g. configs/cpu/pancreas_unet.yaml")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="dotted overrides of config keys, e.g. train.epochs=2 regularizer.name=heuristic")


def register(sub: argparse._SubParsersAction) -> None:
    from ..cli import HelpFormatter

    p = sub.add_parser("train", help="train a model (best/last checkpoints, test metrics)",
                       description="Train a segmentation model on the config's dataset, keep the best "
                       "checkpoint by validation DICE and the last one, then score the best on the "
                       "test split (metrics.json, cases.csv).",
                       epilog=EXAMPLE, formatter_class=HelpFormatter)
    add_config_args(p)
    p.add_argument("--out", type=Path, default=None,
                   help="run folder (default: runs/<dataset>_<model>_<regularizer>_seed<seed>)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted (or finished) run from its last.ckpt")
    p.add_argument("--force", action="store_true", help="replace an existing run folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def default_run_dir(cfg) -> Path:
    return Path("runs") / (f"{cfg['data']['dataset']}_{cfg['model']['name']}_"
                           f"{cfg['regularizer']['name']}_seed{cfg['seed']}")


def run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..training.metrics import summary_line
    from ..training.run import launcher_rank_is_zero, train_run
    from ..errors import MedsegError

    cfg = load_config(args.config, args.overrides)
    out = args.out or default_run_dir(cfg)
    if args.resume and args.force:
        raise MedsegError("--resume and --force exclude each other")
    summary = train_run(cfg, out, resume=args.resume, force=args.force, progress=not args.no_progress)
    if not launcher_rank_is_zero():
        return 0  # other DDP ranks: rank 0 reports
    print("test " + summary_line(summary))
    print(f"run folder: {out}")
    return 0
