"""``medseg predict`` — masks, probabilities and uncertainty for new scans/frames."""

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
                      non-image files (.meta, .json, ...), DICOMDIR index files, BAGLS masks
                      (*_seg.png) and predict's own outputs (*_mask.*, *_prob.nii.gz, ...)
                      are skipped.
  Refused, with one line naming the file, nothing written: a DICOM object that is not an
  image (SEG, RTSTRUCT, RT Dose, SR, waveforms, ...; its SOP Class is named), a truncated
  file, a DICOM Modality other than the checkpoint's (CT for Pancreas-CT, ES = endoscopy
  for BAGLS) unless --allow-modality-mismatch, and with --format dicom-seg|both a NIfTI or
  PNG/JPEG input or a DICOM file without an attribute a SEG must reference
  (FrameOfReferenceUID, Study/Series/SOP Instance UID, PixelSpacing, Image Position/
  Orientation; the attribute is named). NIfTI and PNG/JPEG record no modality. A
  Pancreas-CT checkpoint takes CT volumes (DICOM, NIfTI); a BAGLS checkpoint takes frames
  (PNG/JPEG). Input names must be unique.

inputs of a checkpoint trained on an nnU-Net raw dataset (data.dataset: nnunet), as
nnUNetv2_predict -i takes them:
  folder              every image file in it is a channel file {case}_{XXXX}{ending}, XXXX
                      the 4-digit channel index in dataset.json's channel_names order
                      (0000, 0001, ...); files are grouped by case; name = {case}. Endings:
                      .nii.gz .nii .nrrd .mha .mhd .nhdr (3D, SimpleITK), .png .jpg .jpeg
                      (2D frames; an RGB file is 3 channels). A folder where no file is so
                      named holds one file per case with every channel (the Decathlon's
                      imagesTs; 4D for several). Subfolders by the same rule; a folder that
                      is one DICOM series is one case of a one-channel checkpoint
  channel files       given directly, grouped by case the same way; a file given directly
                      that is not so named is one whole case (name = file name minus ending)
  Refused, one line naming the file, nothing written: a case missing a channel (the
  missing {case}_{XXXX} file is named), a channel index beyond the checkpoint's, a file
  in a folder not named {case}_{XXXX}{ending}, channels on different grids (size,
  spacing, origin, direction), a case whose channels do not add up to the checkpoint's,
  a DICOM series for a checkpoint with several channels. Channels are read as training
  read them, brought to the training orientation, normalised with the checkpoint's plan
  (fingerprint: CT clip + z-score, else z-score per image) and sliced across its axis.

outputs (in the --output folder; <name> = the input's name):
  <name>_mask.nii.gz     CT: uint8 0/1 in the input's geometry (size, origin, spacing,
                         direction as SimpleITK reads it), gzip-compressed
  <name>_mask.png        frame: 8-bit, 0 background / 255 foreground, the frame's size
  <name>_seg.dcm         --format dicom-seg|both, DICOM inputs only: a binary DICOM
                         Segmentation (highdicom) referencing the source series, empty
                         frames omitted (an all-empty mask keeps them all); its algorithm
                         parameters name each checkpoint by file name and SHA-256 prefix
                         (best.ckpt@3f2a9c01b7e4), never by a local path
  <name>_prob.nii.gz     --save-probabilities: float32 mean foreground probability
  <name>_uncertainty.nii.gz  --uncertainty: predictive entropy -sum_c p_c ln p_c (nats)
                         over all classes
  <name>_variance.nii.gz --uncertainty with more than one pass (ensemble, --tta,
                         --mc-samples): variance of the passes' probability of the
                         predicted class (binary: the foreground probability's)
  <name>_overlay.png     --overlay: CT: up to 3 axial slices in the HU window with the
                         mask; frame: the frame with the mask blended in
  Float maps of CT inputs carry the input's geometry; those of frames are 2D NIfTI
  images of the frame's size (spacing 1, origin 0).
  With one input, --output ending in .nii.gz, .nii, .png or .dcm is the output file
  itself and the other files sit next to it, <name> = its name without the suffix.
  Nothing is written unless every input succeeds; existing files need --force. An input
  whose mask comes out empty gets a line saying so after the table.

outputs with several labels (every nnunet checkpoint; Pancreas-CT with merge_tumour false):
  <case><ending>         nnunet: the label map as nnU-Net names it: uint8 label values of
                         dataset.json, the input's ending and geometry (.mhd -> .mha,
                         .nhdr -> .nrrd; frames: <case>.png with the values, not 0/255;
                         a DICOM input: .nii.gz); --output may name a .nrrd/.mha file too
  <name>_mask.nii.gz     Pancreas-CT with tumour: label values 0/1/2
  <name>_prob_<label>.nii.gz  --save-probabilities: one float32 map per class, background
                         included, <label> = its dataset.json name; they sum to 1
  <name>_seg.dcm         one segment per label (number = label value, label = its name,
                         SNOMED CT type where medseg knows the structure, else Tissue)
  <name>_overlay.png     the labels in distinct colours, with a legend

ensembles and sampling:
  Every pass (member network x mirroring x Monte Carlo sample) gives class
  probabilities on the input's grid; their mean is the prediction and its arg-max the
  mask (the class index is the label value). --tta mirrors along the in-plane axes the
  network's training mirrored (data.mirror_axes, recorded in the checkpoint; off by
  default).
  --mc-samples N keeps only the regularizer modules in training mode (BatchNorm stays
  in evaluation mode), seeded by --seed; refused for 'none' and for deterministic
  methods such as Heuristic Dropout."""


EXAMPLES = """examples (the paths make demo creates):
  medseg predict --checkpoint runs/demo/unet_heuristic/checkpoints/best.ckpt --overlay \\
      --output outputs/predict data/synthetic/pancreas_heldout/Pancreas-CT
  medseg predict --checkpoint runs/demo/unet_none/checkpoints/best.ckpt \\
      --checkpoint runs/demo/unet_heuristic/checkpoints/best.ckpt --tta --uncertainty \\
      --format both --output outputs/ensemble/PANCREAS_0001.nii.gz \\
      data/synthetic/pancreas_heldout/Pancreas-CT/PANCREAS_0001
  medseg predict --checkpoint runs/demo/unet_none/checkpoints/best.ckpt --save-probabilities \\
      --format dicom-seg --output outputs/predict_seg data/synthetic/pancreas_heldout/Pancreas-CT
  medseg data synth abdomen --out data/synthetic/nnUNet_raw    # an nnU-Net raw dataset,
  medseg train --config configs/cpu/abdomen_unet.yaml --out runs/abdomen   # a run on it:
  medseg predict --checkpoint runs/abdomen/checkpoints/best.ckpt --save-probabilities \\
      --output outputs/abdomen data/synthetic/nnUNet_raw/Dataset901_SynthAbdomen/imagesTs

The nnU-Net example reads {case}_0000.nii.gz and {case}_0001.nii.gz (the two phases) and
writes {case}.nii.gz, as nnU-Net does.
"""


def register(sub: argparse._SubParsersAction) -> None:
    from ..cli import HelpFormatter

    p = sub.add_parser(
        "predict", help="predict masks for new scans or frames",
        description="Predict segmentation masks with a trained checkpoint or an ensemble. Each "
        "checkpoint carries its preprocessing (HU window or channels, slice size; an nnU-Net "
        "dataset's plan and labels), so inputs are "
        "read and preprocessed exactly as in training and evaluation; outputs come back on each "
        "input's own grid. Checkpoints are opened with torch.load(weights_only=True): a file "
        "that would run code is refused.",
        epilog=INPUT_RULES + "\n\n" + EXAMPLES, formatter_class=HelpFormatter)
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                   help="DICOM series folder, DICOM file, NIfTI file, PNG/JPEG frame, or a folder "
                   "of those; for an nnunet checkpoint {case}_{XXXX}{ending} channel files or a "
                   "folder of them (rules below)")
    # SUPPRESS: no "(default: None)" in the help of options whose help states the default
    nets = p.add_argument_group("networks (give --checkpoint, or --experiment with --method)")
    nets.add_argument("--checkpoint", action="append", type=Path, default=argparse.SUPPRESS,
                      help="a medseg checkpoint, e.g. RUN_DIR/checkpoints/best.ckpt; give it "
                      "several times for an ensemble")
    nets.add_argument("--experiment", type=Path, default=argparse.SUPPRESS, metavar="EXP",
                      help="an experiment folder (results.csv): ensemble of the best checkpoint of "
                      "every run (repeat, fold) of --method")
    nets.add_argument("--method", default=argparse.SUPPRESS, metavar="KEY",
                      help="a method as reports name it (e.g. dropout, 'heuristic (k=3)' or "
                      "heuristic_k=3), optionally MODEL/KEY or DATASET/MODEL/KEY")
    p.add_argument("--output", required=True, type=Path, default=argparse.SUPPRESS,
                   help="folder for the outputs (created); with one input, a .nii.gz/.nii/.png/"
                   ".dcm file name (nnunet checkpoints: also .nrrd/.mha)")
    p.add_argument("--format", dest="fmt", choices=("nifti", "dicom-seg", "both"),
                   default=argparse.SUPPRESS,
                   help="mask format (default: nifti; dicom-seg when --output ends in .dcm)")
    p.add_argument("--tta", action="store_true",
                   help="test-time mirroring along the axes training mirrored; probabilities "
                   "averaged (off by default)")
    p.add_argument("--mc-samples", type=int, default=0, metavar="N",
                   help="Monte Carlo samples per network with the regularizer active (0: off)")
    p.add_argument("--seed", type=int, default=0, help="seed of the Monte Carlo samples")
    p.add_argument("--save-probabilities", action="store_true",
                   help="also write <name>_prob.nii.gz (float32 foreground probability); with "
                   "several labels one <name>_prob_<label>.nii.gz per class")
    p.add_argument("--uncertainty", action="store_true",
                   help="also write <name>_uncertainty.nii.gz (entropy over all classes, nats) "
                   "and, with more than one pass, <name>_variance.nii.gz")
    p.add_argument("--allow-modality-mismatch", action="store_true",
                   help="predict DICOM inputs whose Modality differs from the checkpoint's")
    p.add_argument("--force", action="store_true", help="replace existing output files")
    p.add_argument("--overlay", action="store_true", help="also write <name>_overlay.png per input")
    p.add_argument("--batch-size", type=int, default=argparse.SUPPRESS,
                   help="slices per forward pass (default: the checkpoint's eval.batch_size)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where the networks run (auto: cuda if available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def checkpoints_of(args: argparse.Namespace) -> list[Path]:
    """The --checkpoint paths, or the runs of --method in --experiment (exactly one of the two)."""
    from ..errors import MedsegError
    from ..predict import method_checkpoints

    given = getattr(args, "checkpoint", None)
    experiment, method = getattr(args, "experiment", None), getattr(args, "method", None)
    if given and (experiment or method):
        raise MedsegError("give either --checkpoint or --experiment with --method, not both")
    if given:
        return given
    if experiment is None or method is None:
        raise MedsegError("--checkpoint CKPT, or --experiment EXP with --method KEY, is required")
    return method_checkpoints(experiment, method)


def run(args: argparse.Namespace) -> int:
    from ..checks import check_seed
    from ..errors import MedsegError
    from ..predict import format_report, predict

    try:  # before any input is read or anything written
        check_seed("--seed", args.seed)
    except ValueError as exc:
        raise MedsegError(str(exc)) from None
    report = predict(checkpoints_of(args), args.inputs, args.output, force=args.force,
                     overlay=args.overlay, fmt=getattr(args, "fmt", None),
                     save_probabilities=args.save_probabilities, uncertainty=args.uncertainty,
                     tta=args.tta, mc_samples=args.mc_samples, seed=args.seed,
                     allow_modality_mismatch=args.allow_modality_mismatch,
                     batch_size=getattr(args, "batch_size", None), device=args.device,
                     progress=not args.no_progress)
    print(format_report(report))
    for line in empty_notes(report):
        print(line)
    return 0


def empty_notes(report) -> list[str]:
    """One line per input whose mask is empty: an empty result is said, never silent."""
    notes = []
    for case in report.cases:
        if case.foreground == 0:
            seg = case.files.get("seg")
            held = f"; {seg.name} is a valid DICOM SEG whose frames are all empty" if seg else ""
            notes.append(f"{case.name}: the mask is empty (no foreground predicted){held}")
    return notes
