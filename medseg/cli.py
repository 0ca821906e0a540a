"""The ``medseg`` command line.

One subcommand per job, in the spirit of nnU-Net: ``data`` (synth, check,
prepare, split), ``train``, ``evaluate``, ``predict``, ``experiment``, ``report``,
``coadapt``, ``bench``, ``regularizers``. ``medseg <cmd> --help`` explains each.

User errors (:class:`~medseg.errors.MedsegError`) print one line,
``medseg: error: <message>``, and exit with status 2 — no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

from . import __version__
from .errors import MedsegError

#: subcommand modules under ``medseg.commands``; each defines ``register(subparsers)``
#: which adds its parser and sets ``func`` (called with the parsed args).
COMMANDS = [
    "data", "train", "evaluate", "predict", "experiment", "report", "coadapt",
    "bench", "regularizers",
]


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keep the examples' line breaks and show defaults."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medseg",
        description=(
            "Medical image segmentation on small datasets: U-Net, Attention U-Net and "
            "UNet3+ with Heuristic Dropout and a fair regularizer comparison."
        ),
        epilog=(
            "examples:\n"
            "  medseg data synth pancreas --out data/synthetic/pancreas\n"
            "  medseg train --config configs/cpu/pancreas_unet.yaml regularizer.name=heuristic\n"
            "  medseg predict --checkpoint runs/x/checkpoints/best.ckpt --output out/ scan_dir/\n"
            "\nRun 'medseg <command> --help' for a command's options."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"medseg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"medseg.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"medseg.commands.{name}":
                continue  # not built yet
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        result = args.func(args)
    except MedsegError as exc:
        print(f"medseg: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("medseg: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


def run() -> None:  # pragma: no cover - console entry
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
