"""``medseg predict`` — masks for new scans/frames from a trained checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

INPUT_RULES = """\
inputs (INPUT...):
  DICOM file          one file (.dcm, or any file with the DICOM preamble) is read alone,
                      as a one-slice volume; name = file stem
  NIfTI file          .nii / .nii.gz, a 3D CT volume; name = file name minus .nii/.nii.gz
  PNG/JPEG frame      .png/.jpg/.jpeg; name = file stem
  folder              a folder is ONE DICOM series when it holds (directly or in any
                      subfolder) DICOM files of exactly one SeriesInstanceUID and no other
                      image files; name = folder name. Otherwise each NIfTI/PNG/JPEG file
                      directly in it is an input and each subfolder is searched by the same
                      rule (e.g. a folder of patients, each with one series). Loose DICOM
                      files next to other series or images are an error. Hidden files,
                      non-image files (.meta, .json, ...), BAGLS masks (*_seg.png) and
                      predict's own outputs (*_mask.*, *_overlay.png) are skipped.
  A Pancreas-CT checkpoint takes CT volumes (DICOM, NIfTI); a BAGLS checkpoint takes
  frames (PNG/JPEG). Input names must be unique.

outputs (in --output):
  CT      <name>_mask.nii.gz  uint8 0/1 in the input's geometry (size, origin, spacing,
                              direction as SimpleITK reads it), gzip-compressed
  frame   <name>_mask.png     8-bit, 0 background / 255 foreground, the frame's size
  --overlay  <name>_overlay.png  CT: up to 3 axial slices in the HU window with the mask;
                              frame: the frame with the mask blended in
  Nothing is written unless every input succeeds; existing files need --force."""


EXAMPLES = """examples:
  medseg predict --checkpoint runs/pancreas_unet_none_seed0/checkpoints/best.ckpt \\
      --output out/ Pancreas-CT/PANCREAS_0001 scan.nii.gz --overlay
  medseg predict --checkpoint runs/bagls_unet_none_seed0/checkpoints/best.ckpt \\
      --output out/ data/synthetic/bagls/test
"""


def register(sub: argparse._SubParsersAction) -> None:
    from ..cli import HelpFormatter

    p = sub.add_parser(
        "predict", help="predict masks for new scans or frames",
        description="Predict segmentation masks with a trained checkpoint. The checkpoint carries "
        "its preprocessing (HU window or channels, slice size), so inputs are read and "
        "preprocessed exactly as in training and evaluation; masks come back on each input's own "
        "grid. The checkpoint is opened with torch.load(weights_only=True): a file that would run "
        "code is refused.",
        epilog=INPUT_RULES + "\n\n" + EXAMPLES, formatter_class=HelpFormatter)
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                   help="DICOM series folder, DICOM file, NIfTI file, PNG/JPEG frame, or a folder "
                   "of those (rules below)")
    # SUPPRESS: no "(default: None)" in the help of required options and of --batch-size
    p.add_argument("--checkpoint", required=True, type=Path, default=argparse.SUPPRESS,
                   help="a medseg checkpoint, e.g. RUN_DIR/checkpoints/best.ckpt")
    p.add_argument("--output", required=True, type=Path, default=argparse.SUPPRESS, help="folder for the masks (created)")
    p.add_argument("--force", action="store_true", help="replace existing output files")
    p.add_argument("--overlay", action="store_true", help="also write <name>_overlay.png per input")
    p.add_argument("--batch-size", type=int, default=argparse.SUPPRESS,
                   help="slices per forward pass (default: the checkpoint's eval.batch_size)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where the network runs (auto: cuda if available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..predict import format_report, predict

    report = predict(args.checkpoint, args.inputs, args.output, force=args.force,
                     overlay=args.overlay, batch_size=getattr(args, "batch_size", None), device=args.device,
                     progress=not args.no_progress)
    print(format_report(report))
    return 0
