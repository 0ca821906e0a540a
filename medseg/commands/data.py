"""``medseg data`` — dataset jobs: ``synth`` (write the synthetic defaults) and
``check`` (integrity check of a dataset in its distributed layout).

Each job is one ``_register_<job>(jobs)`` function that adds its parser to the
``medseg data`` sub-command group and sets ``func``; add a job by writing one
such function and listing it in :data:`JOBS`.
"""

from __future__ import annotations

import argparse
import sys
import time


def _formatter():
    from ..cli import HelpFormatter

    return HelpFormatter


# ----------------------------------------------------------------------------- synth
def _register_synth(jobs: argparse._SubParsersAction) -> None:
    p = jobs.add_parser(
        "synth",
        help="write a synthetic Pancreas-CT-like or BAGLS-like dataset",
        description="Write a synthetic dataset in the layout the real one is distributed in, "
        "deterministically from a seed (same seed → identical files). Refuses to write into a "
        "non-empty folder unless --force is given (and then only over an earlier synth output).",
        epilog="examples:\n"
        "  medseg data synth pancreas --out data/synthetic/pancreas\n"
        "  medseg data synth pancreas --out data/synthetic/pancreas_msd --layout msd --cases 4\n"
        "  medseg data synth bagls --out data/synthetic/bagls --frames 400 --test-frames 100",
        formatter_class=_formatter(),
    )
    kinds = p.add_subparsers(dest="dataset", metavar="<dataset>", required=True)
    pan = kinds.add_parser(
        "pancreas",
        help="Pancreas-CT-like CT scans (DICOM series + NIfTI labels, or MSD NIfTI)",
        description="Phantom abdominal CT scans with a small, curved, low-contrast 'pancreas'. "
        "TCIA layout: Pancreas-CT/PANCREAS_NNNN/<study>/<series>/*.dcm and "
        "TCIA_pancreas_labels-02-05-2017/labelNNNN.nii.gz; MSD layout: imagesTr/, labelsTr/, "
        "dataset.json.",
        epilog="example:\n  medseg data synth pancreas --out data/synthetic/pancreas --cases 12 --size 128",
        formatter_class=_formatter(),
    )
    pan.add_argument("--out", default="data/synthetic/pancreas", help="output folder")
    pan.add_argument("--layout", choices=("tcia", "msd"), default="tcia", help="on-disk layout")
    pan.add_argument("--cases", type=int, default=12, help="number of scans")
    pan.add_argument("--size", type=int, default=128, help="slice size in pixels (square)")
    pan.add_argument("--slices", type=int, default=48, help="slices per scan")
    pan.add_argument("--seed", type=int, default=0, help="random seed")
    pan.add_argument("--force", action="store_true", help="replace an earlier synth output")
    pan.set_defaults(func=_run_synth)
    bag = kinds.add_parser(
        "bagls",
        help="BAGLS-like endoscopic glottis frames (N.png, N_seg.png, N.meta)",
        description="Phantom laryngoscopy frames from four 'hospitals' (sizes, colour/grayscale) "
        "with glottis masks, closed-glottis frames included, in training/ and test/.",
        epilog="example:\n  medseg data synth bagls --out data/synthetic/bagls --frames 400 --test-frames 100",
        formatter_class=_formatter(),
    )
    bag.add_argument("--out", default="data/synthetic/bagls", help="output folder")
    bag.add_argument("--frames", type=int, default=400, help="training frames")
    bag.add_argument("--test-frames", type=int, default=100, help="test frames")
    bag.add_argument("--seed", type=int, default=0, help="random seed")
    bag.add_argument("--force", action="store_true", help="replace an earlier synth output")
    bag.set_defaults(func=_run_synth)


def _run_synth(args: argparse.Namespace) -> int:
    from ..data import synth_bagls, synth_pancreas

    start = time.perf_counter()
    if args.dataset == "pancreas":
        out = synth_pancreas(args.out, layout=args.layout, cases=args.cases, size=args.size,
                             slices=args.slices, seed=args.seed, force=args.force, progress=True)
        what = f"{args.cases} scans of {args.size}×{args.size}×{args.slices} ({args.layout.upper()} layout)"
    else:
        out = synth_bagls(args.out, frames=args.frames, test_frames=args.test_frames, seed=args.seed,
                          force=args.force, progress=True)
        what = f"{args.frames} training + {args.test_frames} test frames (BAGLS layout)"
    print(f"wrote {what} to {out} in {time.perf_counter() - start:.1f} s")
    return 0


# ----------------------------------------------------------------------------- check
def _register_check(jobs: argparse._SubParsersAction) -> None:
    p = jobs.add_parser(
        "check",
        help="read every case of a dataset and report problems",
        description="Integrity check: read every scan/frame with the real readers and print one "
        "line per problem ('<file>: <problem>': missing label or mask, unreadable or truncated "
        "file, image/label geometry mismatch, mask size different from the image, label values "
        "outside the expected set, empty folder), then 'OK: N cases' or 'FAILED: M of N cases'. "
        "Exit status 0 when everything passes, 1 when problems were found, 2 for usage errors.",
        epilog="examples:\n"
        "  medseg data check pancreas data/synthetic/pancreas\n"
        "  medseg data check pancreas /data/Task07_Pancreas --layout msd\n"
        "  medseg data check bagls data/synthetic/bagls",
        formatter_class=_formatter(),
    )
    p.add_argument("dataset", choices=("pancreas", "bagls"), help="which dataset")
    p.add_argument("root", help="dataset root folder")
    p.add_argument("--layout", choices=("auto", "tcia", "msd", "bagls"), default="auto",
                   help="on-disk layout (pancreas: tcia | msd)")
    p.set_defaults(func=_run_check)


def _run_check(args: argparse.Namespace) -> int:
    from ..data import check_dataset
    from ..errors import DataError

    layout = args.layout
    if args.dataset == "bagls" and layout in ("tcia", "msd"):
        raise DataError(f"--layout {layout} is a Pancreas-CT layout; BAGLS has one layout (bagls/auto)")
    if args.dataset == "pancreas" and layout == "bagls":
        raise DataError("--layout bagls is for the BAGLS dataset; Pancreas-CT uses tcia, msd or auto")
    if layout == "bagls":
        layout = "auto"
    report = check_dataset(args.dataset, args.root, layout, progress=True)
    for line in report.problems:
        print(line)
    print(report.summary())
    sys.stdout.flush()
    return 0 if report.ok else 1


#: the jobs of ``medseg data``, in --help order
JOBS = [_register_synth, _register_check]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data",
        help="dataset jobs: synth, check",
        description="Dataset jobs. 'synth' writes the synthetic default datasets in the real "
        "layouts; 'check' verifies a dataset before training.",
        epilog="examples:\n"
        "  medseg data synth pancreas --out data/synthetic/pancreas\n"
        "  medseg data check pancreas data/synthetic/pancreas",
        formatter_class=_formatter(),
    )
    jobs = p.add_subparsers(dest="data_command", metavar="<job>")
    for add in JOBS:
        add(jobs)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
