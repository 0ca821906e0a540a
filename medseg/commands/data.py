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
        help="write a synthetic Pancreas-CT-like, BAGLS-like or nnU-Net-format abdomen dataset",
        description="Write a synthetic dataset in the layout the real one is distributed in, "
        "deterministically from a seed (same seed → identical files). Refuses to write into a "
        "non-empty folder unless --force is given (and then only over an earlier synth output).",
        epilog="examples:\n"
        "  medseg data synth pancreas --out data/synthetic/pancreas_msd --layout msd --cases 4\n"
        "  medseg data synth bagls --out data/synthetic/bagls --frames 400 --test-frames 100\n"
        "  medseg data synth pancreas --out data/synthetic/pancreas --force   # same seed, same files\n"
        "  medseg data synth abdomen --out data/synthetic/nnUNet_raw   # → .../Dataset901_SynthAbdomen",
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
        epilog="examples:\n"
        "  medseg data synth pancreas --out data/synthetic/pancreas_small --cases 4 --size 64 --slices 24\n"
        "  medseg data synth pancreas --out data/synthetic/pancreas_msd --layout msd --cases 4\n\n"
        "The default set (12 scans of 128x128x48, seed 0; what make demo trains on) has square\n"
        "pixels of 2.58-3.27 mm and 2.41-3.02 mm between slices, drawn per scan.",
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
    abd = kinds.add_parser(
        "abdomen",
        help="two-phase abdominal CT: liver, kidney, spleen, tumour (nnU-Net v2 raw format)",
        description="Phantom abdominal CT in nnU-Net v2 raw format, written to "
        "OUT/Dataset901_SynthAbdomen/ (OUT plays nnU-Net's nnUNet_raw; other datasets in it are left "
        "alone): dataset.json, imagesTr/abdomen_NNN_0000.nii.gz (non-contrast) and _0001.nii.gz "
        "(portal-venous contrast), labelsTr/abdomen_NNN.nii.gz (0 background, 1 liver, 2 kidney, "
        "3 spleen, 4 tumour), and the test cases in imagesTs/ with their labels in labelsTs/. Some "
        "cases are stored in RAS or LPI orientation.",
        epilog="examples:\n"
        "  medseg data synth abdomen --out data/synthetic/nnUNet_raw\n"
        "  medseg data synth abdomen --out data/synthetic/nnUNet_raw_small --cases 8 --test-cases 2 --size 64",
        formatter_class=_formatter(),
    )
    abd.add_argument("--out", default="data/synthetic/nnUNet_raw",
                     help="nnUNet_raw folder; the dataset is written to OUT/Dataset901_SynthAbdomen")
    abd.add_argument("--cases", type=int, default=16, help="training cases (imagesTr, labelsTr)")
    abd.add_argument("--test-cases", type=int, default=4, help="test cases (imagesTs, labelsTs)")
    abd.add_argument("--size", type=int, default=96, help="slice size in pixels (square)")
    abd.add_argument("--slices", type=int, default=32, help="slices per scan")
    abd.add_argument("--seed", type=int, default=0, help="random seed")
    abd.add_argument("--force", action="store_true", help="replace an earlier synth output")
    abd.set_defaults(func=_run_synth)


def _run_synth(args: argparse.Namespace) -> int:
    from ..checks import check_seed
    from ..data import synth_abdomen, synth_bagls, synth_pancreas
    from ..errors import MedsegError

    try:  # before anything is written
        check_seed("--seed", args.seed)
    except ValueError as exc:
        raise MedsegError(str(exc)) from None

    start = time.perf_counter()
    if args.dataset == "abdomen":
        out = synth_abdomen(args.out, cases=args.cases, test_cases=args.test_cases, size=args.size,
                            slices=args.slices, seed=args.seed, force=args.force, progress=True)
        what = (f"{args.cases} training + {args.test_cases} test cases of {args.size}×{args.size}×"
                f"{args.slices}, 2 channels (nnU-Net v2 raw format)")
    elif args.dataset == "pancreas":
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
        "  medseg data check pancreas data/synthetic/pancreas_heldout --layout tcia\n"
        "  medseg data synth bagls --out data/synthetic/bagls && medseg data check bagls data/synthetic/bagls\n\n"
        "The real datasets where data/README.md puts them: medseg data check pancreas\n"
        "data/Pancreas-CT-TCIA; the MSD layout (Task07_Pancreas) with --layout msd.",
        formatter_class=_formatter(),
    )
    p.add_argument("dataset", choices=("pancreas", "bagls", "nnunet"),
                   help="which dataset (nnunet: any nnU-Net v2 raw or Decathlon dataset folder)")
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
    if args.dataset == "nnunet" and layout != "auto":
        raise DataError(f"--layout {layout}: an nnunet dataset has one layout (its dataset.json says the rest)")
    if layout == "bagls":
        layout = "auto"
    report = check_dataset(args.dataset, args.root, layout, progress=True)
    for line in report.problems:
        print(line)
    print(report.summary())
    sys.stdout.flush()
    return 0 if report.ok else 1


# ----------------------------------------------------------------------------- prepare
def _register_prepare(jobs: argparse._SubParsersAction) -> None:
    p = jobs.add_parser(
        "prepare",
        help="build the 2D slice cache for a config (done implicitly by train)",
        description="Window CT to the config's HU window, scale to [0, 1], resize to data.size and "
        "store every case of the split once under data.cache_dir. A second prepare with unchanged "
        "sources and settings does no work; changed settings build a new cache folder; a changed "
        "source file rebuilds its case. Entries are written atomically.",
        epilog="examples:\n"
        "  medseg data prepare --config configs/cpu/pancreas_unet.yaml\n"
        "  medseg data prepare --config configs/cpu/pancreas_unet.yaml data.size=[128,128] \\\n"
        "      --split-out outputs/split_128.json\n\n"
        "Another dataset location: data.root=PATH (e.g. data.root=data/BAGLS with\n"
        "configs/paper/bagls_unet.yaml).",
        formatter_class=_formatter(),
    )
    p.add_argument("--config", required=True, help="run config (YAML)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    p.add_argument("--split-out", default=None, help="also write the drawn split.json here "
                   "(an existing file only with --force; never the config itself)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --split-out file")
    p.set_defaults(func=_run_prepare)


def _run_prepare(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..data.cache import prepare
    from ..data.splits import resolve_split, save_split

    cfg = load_config(args.config, args.overrides)
    if args.split_out:
        _check_output_file(args.split_out, args.force, protected=[args.config])
    split = resolve_split(cfg["data"])
    report = prepare(cfg, split, progress=True)
    if args.split_out:
        save_split(split, args.split_out)
    n = report.built + report.reused
    print(f"prepared {n} cases in {report.seconds:.1f} s ({report.built} built, {report.reused} "
          f"up to date) → {report.folder}")
    return 0


def _check_output_file(out: str, force: bool, protected: list[str]) -> None:
    """Refuse to write ``out`` over an input (even with --force: the same file by path or
    device/inode, also through a link), a folder, a device, FIFO, socket or link (even with
    --force), or any existing file without --force (:func:`medseg.io.check_output_file`)."""
    from ..io import check_output_file

    check_output_file(out, force=force, inputs=[(p, "the config file") for p in protected[:1]]
                      + [(p, "the split file") for p in protected[1:]], what="split")


# ----------------------------------------------------------------------------- split
def _register_split(jobs: argparse._SubParsersAction) -> None:
    p = jobs.add_parser(
        "split",
        help="draw the subset/split of a config and write split.json",
        description="Draw the config's subset and train/val/test split with data.split_seed "
        "(Pancreas-CT: by scan; BAGLS: training subset, validation from the rest of training/, "
        "test = test/) and write it as JSON. Pass it to runs with data.split_file=PATH.",
        epilog="examples:\n"
        "  medseg data split --config configs/cpu/pancreas_unet.yaml --out outputs/split.json\n"
        "  medseg data split --config configs/cpu/pancreas_unet.yaml data.split_seed=1 \\\n"
        "      --out outputs/split_seed1.json\n"
        "  medseg train --config configs/cpu/pancreas_unet.yaml data.split_file=outputs/split_seed1.json \\\n"
        "      --out runs/split_seed1",
        formatter_class=_formatter(),
    )
    p.add_argument("--config", required=True, help="run config (YAML)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    p.add_argument("--out", required=True, help="split file to write")
    p.add_argument("--force", action="store_true", help="overwrite an existing split file")
    p.set_defaults(func=_run_split)


def _run_split(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..data.splits import make_split, save_split

    _check_output_file(args.out, args.force, protected=[args.config])
    cfg = load_config(args.config, args.overrides)
    if cfg["data"].get("split_file"):  # the split file the config reads is an input too
        _check_output_file(args.out, args.force, protected=[args.config, cfg["data"]["split_file"]])
    split = make_split(cfg["data"])
    save_split(split, args.out)
    print(f"{args.out}: train {len(split['train'])}, val {len(split['val'])}, "
          f"test {len(split['test'])} (seed {split['seed']})")
    return 0


# ----------------------------------------------------------------------------- plan
def _register_plan(jobs: argparse._SubParsersAction) -> None:
    p = jobs.add_parser(
        "plan",
        help="fingerprint an nnU-Net dataset and write its plan (done implicitly by prepare/train)",
        description="Read every training case of an nnU-Net v2 raw (or Decathlon) dataset once and "
        "write fingerprint.json (per case spacing and size after reorientation; per channel the "
        "foreground intensity mean, std, 0.5/99.5 percentiles; per label its voxel share) and "
        "plan.json (slice axis = the coarsest; normalisation per channel: CT channels clipped to "
        "the foreground 0.5-99.5 percentiles then z-scored with the foreground mean/std, other "
        "channels z-scored per image; slices resized to --size). The plan is part of the slice "
        "cache's key and of every checkpoint, so predict normalises new scans as training did. "
        "Nothing is written into the dataset folder.",
        epilog="examples:\n"
        "  medseg data synth abdomen --out data/synthetic/nnUNet_raw\n"
        "  medseg data plan data/synthetic/nnUNet_raw/Dataset901_SynthAbdomen\n"
        "  medseg data plan data/synthetic/nnUNet_raw/Dataset901_SynthAbdomen --size 64 64 \\\n"
        "      --out outputs/plans/d901_64\n\n"
        "A real dataset: medseg data plan nnUNet_raw/Dataset007_Pancreas (any nnU-Net v2 raw or\n"
        "Decathlon folder).",
        formatter_class=_formatter(),
    )
    p.add_argument("root", help="nnU-Net dataset folder (holds dataset.json)")
    p.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"),
                   help="slice size the plan resizes to (default: the config default, 128 128)")
    p.add_argument("--out", default=None, help="folder for fingerprint.json and plan.json "
                   "(default: where training looks for them, data/cache/plans/<dataset>-<hash>)")
    p.set_defaults(func=_run_plan)


def _run_plan(args: argparse.Namespace) -> int:
    from ..config import defaults
    from ..data.nnunet import read_description
    from ..data.plan import plan_dataset, plan_folder_of

    data = {**defaults()["data"], "dataset": "nnunet", "root": args.root}
    if args.size:
        data["size"] = list(args.size)
    description = read_description(args.root)
    for note in description.notes:
        print(note)
    out = args.out or plan_folder_of(data)
    fp, plan = plan_dataset(args.root, data["size"], out, progress=True)
    print(f"{len(fp['cases'])} cases, {len(description.channels)} channel(s), labels "
          f"{', '.join(f'{n} {v}' for n, v in description.labels.items())}")
    shares = ", ".join(f"{n} {100 * s:.3g} %" for n, s in fp["label_shares"].items())
    print(f"voxel shares: {shares}")
    norm = "; ".join(f"{n['channel']}: {n['scheme']}" + (f" clip [{n['clip'][0]:.4g}, {n['clip'][1]:.4g}], "
                                                         f"mean {n['mean']:.4g}, std {n['std']:.4g}"
                                                         if n["scheme"] == "ct" else " per image")
                     for n in plan["normalisation"])
    print(f"slice axis {plan['slice_axis']} (median spacing z, y, x = "
          f"{', '.join(f'{v:.3g}' for v in plan['median_spacing'])} mm); normalisation {norm}")
    print(f"wrote {out}/fingerprint.json and plan.json")
    return 0


#: the jobs of ``medseg data``, in --help order
JOBS = [_register_synth, _register_check, _register_plan, _register_prepare, _register_split]



def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data",
        help="dataset jobs: synth, check, plan, prepare, split",
        description="Dataset jobs. 'synth' writes the synthetic default datasets in the real "
        "layouts; 'check' verifies a dataset before training; 'plan' fingerprints an nnU-Net dataset "
        "and writes its plan; 'prepare' builds the slice cache; 'split' "
        "draws and writes a split file.",
        epilog="examples:\n"
        "  medseg data check pancreas data/synthetic/pancreas\n"
        "  medseg data split --config configs/cpu/pancreas_unet.yaml --out outputs/split.json --force",
        formatter_class=_formatter(),
    )
    jobs = p.add_subparsers(dest="data_command", metavar="<job>")
    for add in JOBS:
        add(jobs)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
