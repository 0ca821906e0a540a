"""``medseg bench`` — run benchmark sections, print tables, write JSON."""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from ..bench import BenchOptions, Section

EXAMPLES = """examples:
  medseg bench --quick --out bench/quick.json     # tiny shapes: checks the plumbing only
  medseg bench --section regularizers --only heuristic,dropout --repeats 5 --out bench/reg.json
  medseg bench --out bench/results.json --force   # every section (make bench: ~4.5 min, 2 cores)
"""


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def register(sub: argparse._SubParsersAction) -> None:
    from ..bench import sections
    from ..cli import HelpFormatter

    listing = "\n".join(f"  {s.name:14s} {s.description}" for s in sections().values())
    p = sub.add_parser(
        "bench", help="benchmark the regularizers, a U-Net step and the data/predict paths",
        description="Measure performance targets on this machine. Each section prints a table "
        "with a PASS/FAIL column per target; all rows are written to a JSON file. Times are "
        "medians of repeats measured side by side (interleaved) in one process, ratios the "
        "median of the paired ratios.",
        epilog=f"sections:\n{listing}\n\n{EXAMPLES}", formatter_class=HelpFormatter)
    p.add_argument("--out", type=Path, default=Path("bench/results.json"),
                   help="JSON file for all rows (written atomically)")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    # SUPPRESS: no "(default: None)" after the help texts that say what the default is
    p.add_argument("--section", type=_csv, default=argparse.SUPPRESS, metavar="NAME,NAME",
                   help="sections to run (default: all)")
    p.add_argument("--only", type=_csv, default=argparse.SUPPRESS, metavar="KEY,KEY",
                   help="regularizer keys for the regularizer sections (default: all)")
    p.add_argument("--repeats", type=int, default=argparse.SUPPRESS, metavar="N",
                   help="timed repeats per measurement (default: each section's own, "
                   "3 for the regularizer shapes, 15 for the U-Net step)")
    p.add_argument("--quick", action="store_true",
                   help="tiny shapes and 1 repeat: checks that everything runs; no target is judged")
    p.add_argument("--device", default="cpu", help="torch device to measure on")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..bench import BenchOptions, sections
    from ..bench.report import document
    from ..io import atomic_write_text

    available = sections()
    args.section = getattr(args, "section", None)
    args.only = getattr(args, "only", None)
    args.repeats = getattr(args, "repeats", None)
    names = args.section or list(available)
    device = _check_args(args, names, available)

    def progress(line: str) -> None:
        print(f"  … {line}", file=sys.stderr, flush=True)

    options = BenchOptions(repeats=args.repeats, quick=args.quick, only=args.only,
                           device=str(device), progress=progress)
    started = time.perf_counter()
    rows, errors = _run_sections([(name, available[name]) for name in names], options)
    meta = {"sections": names, "quick": args.quick, "repeats": args.repeats, "only": args.only,
            "device": str(device), "seconds": round(time.perf_counter() - started, 1),
            "errors": errors}
    atomic_write_text(args.out, document(rows, meta))
    print(f"\n{_verdict(rows, errors)}; results written to {args.out}")
    return 1 if errors else 0


def _check_args(args: argparse.Namespace, names: list[str], available: dict[str, Section]
                ) -> torch.device:
    """Refuse bad arguments before any measurement; return the torch device."""
    import torch

    from ..errors import ConfigError

    unknown = [n for n in names if n not in available]
    if unknown:
        raise ConfigError(f"bench --section: unknown section(s) {', '.join(unknown)} "
                          f"(available: {', '.join(available)})")
    if args.repeats is not None and args.repeats < 1:
        raise ConfigError(f"bench --repeats must be >= 1, got {args.repeats}")
    from ..io import check_output_file

    # an existing file only with --force; never a folder, device, FIFO, socket or link
    check_output_file(args.out, force=args.force, what="benchmark results")
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise ConfigError(f"bench --device: unknown device '{args.device}'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("bench --device cuda: CUDA is not available")
    if args.only:
        from ..bench.regularizers import select_keys

        select_keys(args.only)  # fail before any measurement
    return device


def _run_sections(sections: list[tuple[str, Section]], options: BenchOptions
                  ) -> tuple[list[dict], dict[str, str]]:
    """Run each section, printing its table; a section that breaks is reported and the others
    still run. Returns all rows and ``{section: error}``."""
    from ..bench.report import generic_table
    from ..errors import MedsegError

    rows: list[dict] = []
    errors: dict[str, str] = {}
    for name, section in sections:
        t0 = time.perf_counter()
        print(f"\n== {name}: {section.description}", flush=True)
        try:
            section_rows = section.run(options)
        except MedsegError:
            raise
        except Exception as exc:  # a broken section must not throw away the others' figures
            traceback.print_exc()
            errors[name] = f"{type(exc).__name__}: {exc}"
            print(f"   section {name} FAILED: {errors[name]}", flush=True)
            continue
        for row in section_rows:
            row.setdefault("section", name)
        rows += section_rows
        if options.quick:
            print("   (--quick: tiny shapes, targets not judged)")
        print((section.table or generic_table)(section_rows))
        print(f"   ({time.perf_counter() - t0:.0f} s)", flush=True)
    return rows, errors


def _verdict(rows: list[dict], errors: dict[str, str]) -> str:
    """The closing line: targets passed/failed and sections that failed to run."""
    from ..bench.report import summary

    result = summary(rows)
    if result["passed"] is None:
        verdict = "no target judged"
    elif result["passed"]:
        verdict = f"all {result['targets_checked']} targets PASS"
    else:
        verdict = (f"{len(result['targets_failed'])} of {result['targets_checked']} targets FAIL: "
                   + ", ".join(result["targets_failed"]))
    if errors:
        verdict += f"; {len(errors)} section(s) failed to run: {', '.join(errors)}"
    return verdict
