"""``medseg regularizers`` — list the catalogue with parameters and defaults."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from ..cli import HelpFormatter

    p = sub.add_parser(
        "regularizers",
        help="list the regularizers, their parameters and defaults",
        description="List every regularizer key usable as regularizer.name, with its "
        "parameters (settable as regularizer.<param>=value) and the methods left out.",
        epilog="example:\n  medseg regularizers",
        formatter_class=HelpFormatter,
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import regularizers
    from ..regularizers.catalogue import NOT_APPLICABLE

    for name in regularizers.available():
        cls = regularizers.get(name)
        params = ", ".join(f"{k}={v!r}" for k, v in regularizers.parameters(name).items())
        summary = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        print(f"{name:20s} [{cls.placement}] {params}")
        if summary:
            print(f"{'':20s} {summary}")
    print("\nnot applicable to 2D segmentation CNNs:")
    for name, why in NOT_APPLICABLE.items():
        print(f"  {name}: {why}")
    return 0
