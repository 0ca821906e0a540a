"""The ``medseg`` command line.

One subcommand per job, in the spirit of nnU-Net: ``data`` (synth, check,
prepare, split), ``train``, ``evaluate``, ``predict``, ``experiment``, ``report``,
``coadapt``, ``drops``, ``bench``, ``regularizers``, ``config`` (show).
``medseg <cmd> --help`` explains each; its examples work as pasted after ``make demo``
(tests/commands/test_help_examples.py runs them).

The error boundary (:func:`main`): user errors (:class:`~medseg.errors.MedsegError`)
and the failures a user's files or machine cause (disk full, permission denied,
undecodable YAML/JSON/pickle/DICOM/PNG, decompression bombs; see
:func:`medseg.errors.expected_failure`) print one line, ``medseg: error: <file>:
<problem>``, and exit with status 2 — no traceback; a genuine bug keeps its
traceback. Ctrl-C prints ``medseg: interrupted`` and exits with 130.

``key=value`` overrides may stand anywhere after the subcommand, before or after
its options.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from . import __version__
from .errors import expected_failure

#: subcommand modules under ``medseg.commands``; each defines ``register(subparsers)``
#: which adds its parser and sets ``func`` (called with the parsed args).
COMMANDS = [
    "data", "train", "evaluate", "predict", "experiment", "report", "coadapt",
    "drops", "bench", "regularizers", "config",
]


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keep the examples' line breaks and show each option's default once: not where its help
    already says it, nor where there is none to show (required, None, an off flag)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.required or action.default is None or action.default is False:
            return text
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medseg",
        description=(
            "Medical image segmentation on small datasets: U-Net, Attention U-Net and "
            "UNet3+ with Heuristic Dropout and a fair regularizer comparison."
        ),
        epilog=(
            "Run it as .venv/bin/medseg, or as medseg after 'source .venv/bin/activate' (make setup,\n"
            "make demo and make test create .venv). The examples of every --help use the paths\n"
            "'make demo' creates (data/synthetic/, runs/demo/) and write under folders git ignores\n"
            "(runs/, outputs/, experiments/, bench/, data/).\n\n"
            "examples:\n"
            "  medseg data check pancreas data/synthetic/pancreas\n"
            "  medseg train --config configs/cpu/pancreas_unet.yaml regularizer.name=heuristic\n"
            "  medseg predict --checkpoint runs/demo/unet_heuristic/checkpoints/best.ckpt \\\n"
            "      --output outputs/predict data/synthetic/pancreas_heldout/Pancreas-CT\n"
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


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv``; ``key=value`` words argparse left over (e.g. after an option)
    join the subcommand's overrides when it takes any."""
    args, extra = parser.parse_known_args(argv)
    overrides = [a for a in extra if "=" in a and not a.startswith("-")]
    takes_overrides = any(isinstance(a, argparse._StoreAction) and a.dest == "overrides"
                          for a in _subparser_actions(parser, args))
    rest = [a for a in extra if a not in overrides or not takes_overrides]
    if rest:
        parser.parse_args(argv)  # the usual "unrecognized arguments" message, exit 2
    if overrides and takes_overrides:
        args.overrides = [*getattr(args, "overrides", []), *overrides]
    return args


def _subparser_actions(parser: argparse.ArgumentParser, args: argparse.Namespace):
    """The actions of the (innermost) subcommand parser chosen in ``args``."""
    current = parser
    for dest in ("command", "data_command", "dataset"):
        name = getattr(args, dest, None)
        sub = next((a for a in current._actions if isinstance(a, argparse._SubParsersAction)), None)
        if name is None or sub is None or name not in sub.choices:
            break
        current = sub.choices[name]
    return current._actions


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print("medseg: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the boundary: expected failures become one line
        message = expected_failure(exc)
        if message is None:
            raise  # a genuine bug: keep the traceback
        print(f"medseg: error: {message}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    return int(result or 0)


def run() -> None:  # pragma: no cover - console entry
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
