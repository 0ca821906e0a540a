"""The ``medseg predict`` job: check everything, predict every input, write, commit.

No partial outputs: the checkpoints, every input and every output path are
checked (formats, headers, SOP classes, modalities, sizes, names, existing files)
before anything is written; the outputs are then written atomically into a
hidden staging folder inside the output folder and moved into place only when
every input has succeeded. Any failure removes the staging folder (and an output
folder predict created), so the output folder holds either all new files or none.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import MedsegError, describe_os_error
from ..io import make_temp_dir, stale_temporaries
from . import readers, writers
from .inference import Prediction, Predictor
from .inputs import PredictInput, check_inputs, discover_inputs, why
from .nnunet_inputs import discover_channel_inputs
from .writers import Naming, OutputPlan, Wanted


@dataclass
class CaseResult:
    """What was written for one input."""

    name: str
    source: Path
    kind: str
    shape: tuple[int, ...]          #: CT (z, y, x); frame (h, w)
    foreground: int                 #: predicted voxels/pixels
    mask: Path                      #: final path of the main file (mask, or the SEG alone)
    overlay: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)  #: every output by role
    seconds: float = 0.0
    #: per-class checkpoints: predicted voxels/pixels of every foreground label, by name
    labels: dict[str, int] = field(default_factory=dict)


@dataclass
class PredictReport:
    output: Path
    cases: list[CaseResult]
    checkpoints: list[Path]
    dataset: str
    device: str
    passes: int
    seconds: float

    @property
    def checkpoint(self) -> Path:
        return self.checkpoints[0]


def predict(checkpoint: str | os.PathLike | Sequence[str | os.PathLike] | Predictor,
            inputs: Sequence[str | os.PathLike], output: str | os.PathLike, *,
            force: bool = False, overlay: bool = False, fmt: str | None = None,
            save_probabilities: bool = False, uncertainty: bool = False, tta: bool = False,
            mc_samples: int = 0, seed: int = 0, allow_modality_mismatch: bool = False,
            batch_size: int | None = None, device: str = "auto",
            progress: bool = True) -> PredictReport:
    """Predict ``inputs`` with one checkpoint, several (an ensemble) or a loaded :class:`Predictor`.

    Everything that can be checked is checked before anything is written; the
    files appear under ``output`` only once every input has succeeded.
    """
    t0 = time.perf_counter()
    output = Path(output)
    wanted = Wanted(writers.resolve_format(fmt, output), save_probabilities, uncertainty, overlay)
    predictor = checkpoint if isinstance(checkpoint, Predictor) else Predictor(
        checkpoint, device=device, tta=tta, mc_samples=mc_samples, seed=seed, batch_size=batch_size)
    if predictor.dataset == "nnunet":  # nnU-Net's input convention: {case}_{XXXX}{ending}
        cases = discover_channel_inputs(inputs, predictor.channels)
    else:
        cases = discover_inputs(inputs)
    check_inputs(cases, predictor.dataset, predictor.modality, predictor.checkpoints[0],
                 allow_modality_mismatch=allow_modality_mismatch, channels=predictor.channels,
                 trained_ending=predictor.file_ending)
    _check_format(cases, wanted.fmt)
    plans = writers.plan_outputs(cases, output, wanted, predictor.passes, naming_of(predictor))
    writers.check_targets(plans, force, cases)
    folder = plans[0].folder
    results = _run_staged(predictor, cases, plans, folder, progress)
    return PredictReport(output, results, predictor.checkpoints, predictor.dataset,
                         str(predictor.device), predictor.passes, time.perf_counter() - t0)


def naming_of(predictor: Predictor) -> Naming:
    """How the predictor's outputs are named (nnU-Net's label maps; per-class probabilities)."""
    return Naming(nnunet=predictor.dataset == "nnunet",
                  labels=predictor.labels if predictor.per_class else None)


def _check_format(cases: Sequence[PredictInput], fmt: str) -> None:
    if fmt == "nifti":
        return
    for inp in cases:
        if inp.fmt not in ("dicom-series", "dicom-file"):
            if inp.fmt == "channels":
                what = "PNG/JPEG frame" if inp.kind == "frame" else f"{inp.ending} volume"
                what = f"a case of {what} files"
            else:
                what = {"nifti": "a NIfTI file", "frame": "a PNG/JPEG frame"}[inp.fmt]
            raise MedsegError(f"{inp.source}: --format {fmt} writes a DICOM SEG, which needs a "
                              f"DICOM input; this is {what}")


#: the staging folder's name stem inside the output folder (``.medseg-predict.<random>.<host>-<pid>.tmp``)
STAGING = "medseg-predict"


def _run_staged(predictor: Predictor, cases: Sequence[PredictInput], plans: Sequence[OutputPlan],
                folder: Path, progress: bool) -> list[CaseResult]:
    from tqdm.auto import tqdm

    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for stale in stale_temporaries(folder / STAGING, "tmp"):  # left by a killed predict
            shutil.rmtree(stale, ignore_errors=True)
        staging = make_temp_dir(folder / STAGING)  # .medseg-predict.<random>.<host>-<pid>.tmp
    except OSError as exc:
        raise MedsegError(f"{folder}: cannot create the output folder ({why(exc)})") from None
    results: list[CaseResult] = []
    try:
        bar = tqdm(list(zip(cases, plans)), desc="predict", unit="case",
                   disable=not progress or None, leave=False)
        for inp, plan in bar:
            bar.set_postfix_str(inp.name, refresh=False)
            try:
                results.append(predict_one(predictor, inp, plan, staging))
            except OSError as exc:  # e.g. disk full while writing: name the file asked for
                name = Path(exc.filename).name if exc.filename else None
                final = next((p for p in plan.paths.values() if p.name == name), folder)
                reason = describe_os_error(OSError(exc.errno, exc.strerror or str(exc)))
                raise MedsegError(f"{final}: cannot write the prediction of {inp.source} "
                                  f"({reason}); nothing written, earlier files kept") from None
        for plan in plans:  # commit: every case succeeded
            for final in plan.paths.values():
                os.replace(staging / final.name, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return results


def predict_one(predictor: Predictor, inp: PredictInput, plan: OutputPlan,
                staging: Path) -> CaseResult:
    """Read, predict and write one input's outputs into ``staging`` (final names)."""
    t0 = time.perf_counter()
    staged = {role: staging / p.name for role, p in plan.paths.items()}
    classes = any(role.startswith("prob:") for role in staged)
    if predictor.dataset == "nnunet":
        case = readers.read_channel_case(inp, predictor.description(inp.ending or ".nii.gz"))
        pred = predictor.predict_volume(case.image, None if case.frame else case.geometry,
                                        str(inp.source), classes=classes)
        if case.frame:  # (1, H, W) → the frame's (H, W), as BAGLS frames
            pred = pred.map(lambda a: a[..., 0, :, :])
        _write_channels(predictor, inp, case, pred, staged)
    elif inp.kind == "ct":
        case = readers.read_ct(inp)
        pred = predictor.predict_ct(case.hu, case.geometry, str(inp.source), classes=classes)
        _write_ct(predictor, inp, case, pred, staged)
    else:
        image = readers.read_frame(inp)
        pred = predictor.predict_frame(image, classes=classes)
        _write_frame(image, pred, staged)
    counts = {}
    if predictor.per_class:
        found = np.bincount(pred.mask.ravel(), minlength=256)
        counts = {n: int(found[v]) for n, v in predictor.labels.items() if v}
    return CaseResult(inp.name, inp.source, inp.kind, tuple(int(v) for v in pred.mask.shape),
                      int(np.count_nonzero(pred.mask)), plan.main, plan.paths.get("overlay"),
                      dict(plan.paths), time.perf_counter() - t0, counts)


def _write_maps(pred: Prediction, staged: dict[str, Path], geometry) -> None:
    for role, array in (("prob", pred.probability), ("uncertainty", pred.entropy),
                        ("variance", pred.variance)):
        if role in staged:
            writers.write_nifti(staged[role], array, geometry, np.float32)
    for role, path in staged.items():  # per class: prob:<label value> → its class's map
        if role.startswith("prob:"):
            assert pred.probabilities is not None
            writers.write_nifti(path, pred.probabilities[int(role[5:])], geometry, np.float32)


def _write_seg(predictor: Predictor, path: Path, mask: np.ndarray, sources: Sequence[Path]) -> None:
    first = predictor.members[0]
    algorithm = f"medseg {first.meta['model']['name']} {first.method}"
    writers.write_dicom_seg(path, mask, sources, dataset=predictor.dataset,
                            algorithm=algorithm, checkpoints=predictor.checkpoints,
                            settings=_settings(predictor),
                            labels=predictor.labels if predictor.per_class else None,
                            title=predictor.dataset_name)


def _write_ct(predictor: Predictor, inp: PredictInput, case: readers.CTCase, pred: Prediction,
              staged: dict[str, Path]) -> None:
    if "mask" in staged:
        writers.write_nifti(staged["mask"], pred.mask, case.geometry, np.uint8)
    if "seg" in staged:
        _write_seg(predictor, staged["seg"], pred.mask, case.sources)
    _write_maps(pred, staged, case.geometry)
    if "overlay" in staged and predictor.per_class:
        writers.write_labels_overlay(staged["overlay"], inp.name, case.hu, pred.mask,
                                     predictor.preprocessing["window"], predictor.labels,
                                     tuple(case.geometry.spacing)[:2])
    elif "overlay" in staged:
        writers.write_ct_overlay(staged["overlay"], inp.name, case.hu, pred.mask,
                                 predictor.preprocessing["window"], tuple(case.geometry.spacing)[:2])


def _write_channels(predictor: Predictor, inp: PredictInput, case: readers.ChannelCase,
                    pred: Prediction, staged: dict[str, Path]) -> None:
    """An nnunet checkpoint's outputs: the label map as nnU-Net writes it, in the input's
    geometry (frames: the frame's size), the SEG, the per-class maps, the overlay."""
    geometry = None if case.frame else case.geometry
    if "mask" in staged:
        writers.write_label_map(staged["mask"], pred.mask, geometry)
    if "seg" in staged:
        _write_seg(predictor, staged["seg"], pred.mask, case.sources)
    _write_maps(pred, staged, geometry)
    if "overlay" in staged:
        image = case.image[:, 0] if case.frame else case.image[0]
        if case.frame and image.shape[0] == 3:  # an RGB frame: (H, W, 3) as it is shown
            image = np.moveaxis(image, 0, -1)
        elif case.frame:
            image = image[0]
        window = writers.display_window(case.image[0], predictor.plan["normalisation"][0])
        spacing = (1.0, 1.0) if case.frame else tuple(case.geometry.spacing)[:2]
        writers.write_labels_overlay(staged["overlay"], inp.name, image, pred.mask, window,
                                     predictor.labels, spacing)


def _write_frame(image: np.ndarray, pred: Prediction, staged: dict[str, Path]) -> None:
    if "mask" in staged:
        writers.write_frame_mask(staged["mask"], pred.mask)
    _write_maps(pred, staged, None)
    if "overlay" in staged:
        writers.write_frame_overlay(staged["overlay"], image, pred.mask)


def _settings(predictor: Predictor) -> dict[str, str]:
    axes = sorted({a for m in predictor.members for a in m.mirror_axes})
    tta = f"mirror {'/'.join(axes)}" if predictor.tta else "off"
    return {"members": str(len(predictor.members)), "tta": tta,
            "mc_samples": str(predictor.mc_samples), "seed": str(predictor.seed)}


def format_report(report: PredictReport) -> str:
    """A short table of what was written, for the CLI."""
    width = max([len(c.name) for c in report.cases] + [4])
    frames = report.dataset == "bagls" or all(c.kind == "frame" for c in report.cases)
    unit = "pixels" if frames else "voxels"
    lines = [f"{'case':<{width}}  {'size':>14}  {'foreground ' + unit:>18}  files"]
    for c in report.cases:
        size = "×".join(str(v) for v in (c.shape[::-1]))  # x × y (× z), as viewers show it
        files = ", ".join(p.name for p in c.files.values())
        lines.append(f"{c.name:<{width}}  {size:>14}  {c.foreground:>18}  {files}")
        if c.labels:  # several labels: each one's share of the foreground
            per = ", ".join(f"{name} {n}" for name, n in c.labels.items())
            lines.append(f"{'':<{width}}  {'':>14}  {'per label: ' + per}")
    n = len(report.cases)
    extra = f" and {n} overlay(s)" if any(c.overlay for c in report.cases) else ""
    nets = (f"checkpoint {report.checkpoint}" if len(report.checkpoints) == 1
            else f"ensemble of {len(report.checkpoints)} checkpoints")
    lines.append(f"wrote {n} mask(s){extra} to {report.output} "
                 f"({report.seconds:.1f} s on {report.device}; {nets}; "
                 f"{report.passes} pass(es) averaged)")
    return "\n".join(lines)
