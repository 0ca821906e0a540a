"""Where each output goes and how it is written (every file atomically, into staging).

Names (:func:`plan_outputs`): in an output folder, per input ``<name>``:

=====================  ==========================================================
``_mask.nii.gz``       CT mask, uint8 {0, 1}, the input's geometry, gzip
``_mask.png``          frame mask, 8-bit, 0 background / 255 foreground
``_seg.dcm``           DICOM Segmentation (``--format dicom-seg|both``)
``_prob.nii.gz``       float32 foreground probability (``--save-probabilities``)
``_uncertainty.nii.gz`` float32 predictive entropy, nats (``--uncertainty``)
``_variance.nii.gz``   float32 variance over passes (``--uncertainty``, >1 pass)
``_overlay.png``       the mask drawn on the image (``--overlay``)
=====================  ==========================================================

The float maps of CT inputs carry the input's geometry; those of frames are 2D
NIfTI images of the frame's size (x = column, y = row, spacing 1, origin 0).
With one input, ``--output`` ending in ``.nii.gz``, ``.nii``, ``.png`` or ``.dcm``
is the main file itself and the companions sit next to it, named as above with
``<name>`` = that file's name without its suffix.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import DataError, MedsegError
from ..io import atomic_write_with
from .inputs import PredictInput

#: --output suffixes that make it a file; the mask kinds each can hold
FILE_SUFFIXES = {".nii.gz": "ct", ".nii": "ct", ".png": "frame", ".dcm": "ct"}
#: suffixes a folder must not end in (it would look like a file)
_FILE_LIKE = (".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".nrrd", ".nhdr", ".mha", ".mhd",
              ".gz", ".zip", ".npy", ".npz", ".json", ".csv", ".txt", ".dicom", ".ima", ".h5",
              ".pt", ".ckpt", ".pkl")
FORMATS = ("nifti", "dicom-seg", "both")


@dataclass
class Wanted:
    """Which outputs the user asked for."""

    fmt: str = "nifti"
    probabilities: bool = False
    uncertainty: bool = False
    overlay: bool = False


@dataclass
class OutputPlan:
    """Final paths of one input's outputs, by role (mask, seg, prob, uncertainty, variance, overlay)."""

    folder: Path
    paths: dict[str, Path] = field(default_factory=dict)

    @property
    def main(self) -> Path:
        return self.paths.get("mask") or self.paths["seg"]


def file_suffix(path: Path) -> str | None:
    name = path.name.lower()
    return next((s for s in FILE_SUFFIXES if name.endswith(s)), None)


def resolve_format(fmt: str | None, output: Path) -> str:
    """``--format``; left out, ``dicom-seg`` for an output ending in ``.dcm``, else ``nifti``."""
    suffix = file_suffix(output)
    if fmt is None:
        return "dicom-seg" if suffix == ".dcm" else "nifti"
    if fmt not in FORMATS:
        raise MedsegError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    if suffix == ".dcm" and fmt == "nifti":
        raise MedsegError(f"--output {output}: a .dcm file is a DICOM SEG, but --format is nifti")
    if suffix in (".nii.gz", ".nii", ".png") and fmt == "dicom-seg":
        raise MedsegError(f"--output {output}: a {suffix} file with --format dicom-seg; name a "
                          ".dcm file or a folder")
    return fmt


def _roles(inp: PredictInput, wanted: Wanted, passes: int) -> dict[str, str]:
    """Role → file-name ending for one input."""
    roles: dict[str, str] = {}
    if wanted.fmt in ("nifti", "both"):
        roles["mask"] = "_mask.nii.gz" if inp.kind == "ct" else "_mask.png"
    if wanted.fmt in ("dicom-seg", "both"):
        roles["seg"] = "_seg.dcm"
    if wanted.probabilities:
        roles["prob"] = "_prob.nii.gz"
    if wanted.uncertainty:
        roles["uncertainty"] = "_uncertainty.nii.gz"
        if passes > 1:
            roles["variance"] = "_variance.nii.gz"
    if wanted.overlay:
        roles["overlay"] = "_overlay.png"
    return roles


def plan_outputs(inputs: Sequence[PredictInput], output: Path, wanted: Wanted,
                 passes: int) -> list[OutputPlan]:
    """Every input's output paths under ``--output`` (a folder, or with one input a file).

    With a DICOM SEG wanted, every DICOM input's files must also carry what a
    Segmentation references (:func:`check_seg_sources`), so a refusal comes before
    anything is written.
    """
    if wanted.fmt in ("dicom-seg", "both"):
        check_seg_sources(inputs)
    suffix = file_suffix(output)
    if suffix is None:
        _check_folder(output)
        return [OutputPlan(output, {r: output / f"{i.name}{end}"
                                    for r, end in _roles(i, wanted, passes).items()})
                for i in inputs]
    if len(inputs) != 1:
        raise MedsegError(f"--output {output}: names a {suffix} file, but {len(inputs)} inputs "
                          "were given; give a folder")
    (inp,) = inputs
    if FILE_SUFFIXES[suffix] != inp.kind:
        holds = ".nii.gz, .nii or .dcm" if inp.kind == "ct" else ".png"
        raise MedsegError(f"--output {output}: a {suffix} file cannot hold the mask of "
                          f"{inp.source} ({'a CT volume' if inp.kind == 'ct' else 'a frame'}: {holds})")
    stem = output.name[: -len(suffix)]
    paths = {r: output.parent / f"{stem}{end}" for r, end in _roles(inp, wanted, passes).items()}
    paths["seg" if suffix == ".dcm" else "mask"] = output
    return [OutputPlan(output.parent, paths)]


def _check_folder(output: Path) -> None:
    if output.exists() and not output.is_dir():
        raise MedsegError(f"{output}: --output exists and is not a folder")
    if not output.exists() and output.name.lower().endswith(_FILE_LIKE):
        raise MedsegError(f"--output {output}: looks like a file name, which is not an output "
                          "format; give a .nii.gz, .nii, .png or .dcm file or a folder")


def check_targets(plans: Sequence[OutputPlan], force: bool) -> None:
    """No output may be a folder; an existing file needs ``force``."""
    for plan in plans:
        for target in plan.paths.values():
            if target.is_dir():
                raise MedsegError(f"{target}: exists and is a folder")
            if target.exists() and not force:
                raise MedsegError(f"{target}: exists (use --force to replace it)")


# --------------------------------------------------------------------------- NIfTI / PNG


def write_nifti(path: Path, array: np.ndarray, geometry: Any | None, dtype: Any) -> None:
    """``array`` ((Z, Y, X) or a frame's (Y, X)) as gzip NIfTI, in ``geometry`` when given."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=dtype))
    if geometry is not None:
        geometry.apply_to(img)
    atomic_write_with(path, lambda tmp: sitk.WriteImage(img, str(tmp), True), suffix=".nii.gz")


def write_frame_mask(path: Path, mask: np.ndarray) -> None:
    """8-bit PNG, 0 background / 255 foreground (as BAGLS' ``_seg.png``)."""
    from PIL import Image

    img = Image.fromarray((mask > 0).astype(np.uint8) * 255, mode="L")
    atomic_write_with(path, lambda tmp: img.save(tmp, format="PNG"), suffix=".png")


def _outline(mask: np.ndarray) -> np.ndarray:
    from skimage.segmentation import find_boundaries

    return find_boundaries(mask > 0, mode="inner")


def write_frame_overlay(path: Path, image: np.ndarray, mask: np.ndarray, alpha: float = 0.4) -> None:
    """The frame at its own size, the mask blended in red and outlined in yellow."""
    from PIL import Image

    img = np.asarray(image)
    if img.dtype != np.uint8:
        img = (img.astype(np.float32) / max(1.0, float(img.max())) * 255).astype(np.uint8)
    rgb = np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img[..., :3]
    out = rgb.astype(np.float32)
    m = mask > 0
    out[m] = (1 - alpha) * out[m] + alpha * np.array([255.0, 0.0, 0.0])
    out[_outline(mask)] = (255.0, 255.0, 0.0)
    pil = Image.fromarray(out.clip(0, 255).astype(np.uint8), mode="RGB")
    atomic_write_with(path, lambda tmp: pil.save(tmp, format="PNG"), suffix=".png")


def overlay_slices(mask: np.ndarray, count: int = 3) -> list[int]:
    """Axial slices to show: the largest predicted area and two across the mask's extent."""
    z = mask.shape[0]
    area = mask.reshape(z, -1).sum(axis=1)
    if not area.any():
        picks = [z // 4, z // 2, (3 * z) // 4]
    else:
        nz = np.flatnonzero(area)
        lo, hi = int(nz[0]), int(nz[-1])
        picks = [lo + (hi - lo) // 4, int(area.argmax()), hi - (hi - lo) // 4]
    return sorted(set(picks))[:count]


def write_ct_overlay(path: Path, name: str, hu: np.ndarray, mask: np.ndarray, window: Sequence[float],
                     spacing_xy: Sequence[float] = (1.0, 1.0)) -> None:
    """Axial slices in the HU window with the mask filled (red) and outlined (yellow)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    picks = overlay_slices(mask)
    fig = Figure(figsize=(3.2 * len(picks), 3.5), dpi=100)
    FigureCanvasAgg(fig)
    aspect = float(spacing_xy[1]) / float(spacing_xy[0])  # row (y) over column (x) spacing
    for i, k in enumerate(picks):
        ax = fig.add_subplot(1, len(picks), i + 1)
        ax.imshow(hu[k], cmap="gray", vmin=window[0], vmax=window[1], aspect=aspect,
                  interpolation="nearest")
        m = mask[k] > 0
        if m.any():
            rgba = np.zeros((*m.shape, 4), dtype=np.float32)
            rgba[m] = (1.0, 0.0, 0.0, 0.35)
            ax.imshow(rgba, aspect=aspect, interpolation="nearest")
            ax.contour(m.astype(np.float32), levels=[0.5], colors="yellow", linewidths=0.8)
        ax.set_title(f"z={k}  ({int(m.sum())} px)", fontsize=9)
        ax.set_axis_off()
    fig.suptitle(f"{name}: predicted mask, window {window[0]:g}…{window[1]:g} HU", fontsize=10)
    fig.tight_layout()
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, format="png"), suffix=".png")


# --------------------------------------------------------------------------- DICOM SEG

#: what the one segment is, by dataset: (label, SNOMED CT property type)
SEGMENTED = {"pancreas": ("pancreas", "Pancreas"), "bagls": ("glottal area", "Glottis")}


#: patient/study attributes a SEG copies from its sources: type 2 (may be empty, must be present)
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
          "StudyID", "AccessionNumber", "ReferringPhysicianName")


def _with_type2(ds: Any) -> Any:
    """``ds`` with the type 2 attributes it lacks added empty (as PS3.3 allows for a source)."""
    for keyword in _TYPE2:
        if keyword not in ds:
            setattr(ds, keyword, "")
    return ds


#: what a Segmentation references in, or copies from, each source file (PS3.3 C.8.20 and the
#: highdicom constructor); without one highdicom fails or writes an invalid SEG
SEG_SOURCE_ATTRIBUTES = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
                         "FrameOfReferenceUID", "Modality", "Rows", "Columns", "PixelSpacing",
                         "ImageOrientationPatient", "ImagePositionPatient")


def check_seg_sources(inputs: Sequence[PredictInput]) -> None:
    """Every file of every DICOM input carries :data:`SEG_SOURCE_ATTRIBUTES`, non-empty.

    One line naming the first file and attribute that is missing (e.g. a single CT
    file without FrameOfReferenceUID); non-DICOM inputs have no files and are refused
    elsewhere.
    """
    import pydicom

    for inp in inputs:
        for path in inp.files:
            ds = pydicom.dcmread(str(path), stop_before_pixels=True,
                                 specific_tags=list(SEG_SOURCE_ATTRIBUTES))
            missing = next((k for k in SEG_SOURCE_ATTRIBUTES if _empty(ds.get(k))), None)
            if missing:
                raise DataError(f"{path}: has no {missing}, which a DICOM SEG must reference; "
                                "nothing written (--format nifti writes a NIfTI mask instead)")


def _empty(value: Any) -> bool:
    """Absent, or present without a value (a type 2 attribute left empty)."""
    return value is None or not str(value).strip()


def checkpoint_labels(checkpoints: Sequence[Path]) -> list[str]:
    """How a SEG names its checkpoints: ``<name>@<sha256, 12 hex digits>`` — never a local path.

    ``<name>`` is the file name, or for members with the same file name the
    shortest trailing part of their paths that tells them apart (``repeat0/best.ckpt``,
    ``repeat1/best.ckpt``); the characters the parameter string reserves (``,``, ``=``)
    and spaces become ``_``.
    """
    paths = [Path(c) for c in checkpoints]
    parts = [Path(os.path.abspath(p)).parts[1:] for p in paths]
    depth = 1
    while len({q[-depth:] for q in parts}) < len(set(parts)) and depth < min(map(len, parts)):
        depth += 1
    names = ["/".join(q[-depth:]) for q in parts]
    return [f"{re.sub(r'[,= ]', '_', n)}@{checkpoint_hash(p)}" for n, p in zip(names, paths)]


@functools.lru_cache(maxsize=256)
def _hash(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def checkpoint_hash(path: Path) -> str:
    """The first 12 hex digits of the file's SHA-256 (computed once per file version);
    ``unreadable`` when the file is gone (a loaded Predictor outlives its files)."""
    try:
        st = os.stat(path)
        return _hash(os.path.abspath(path), st.st_size, st.st_mtime_ns)
    except OSError:
        return "unreadable"


def write_dicom_seg(path: Path, mask: np.ndarray, sources: Sequence[Path], *, dataset: str,
                    algorithm: str, checkpoints: Sequence[Path], settings: dict[str, str]) -> None:
    """A binary DICOM Segmentation of ``mask`` (Z, Y, X) referencing the source slices.

    ``sources`` are the series' files in the mask's z order; the SEG references
    their series, SOP instances and frame of reference, holds one segment whose
    algorithm identification names medseg, the network and the checkpoint(s) (by
    :func:`checkpoint_labels`: file name and content hash, no local path), and
    omits empty frames. An all-empty mask keeps every frame (a SEG needs at least
    one), which highdicom would otherwise announce on the console.
    """
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    from .. import __version__

    images = [_with_type2(pydicom.dcmread(str(p), stop_before_pixels=True)) for p in sources]
    label, prop = SEGMENTED[dataset]
    key = "checkpoint" if len(checkpoints) == 1 else "checkpoints"
    params = {key: " ".join(checkpoint_labels(checkpoints)), **settings}
    algo = hd.AlgorithmIdentificationSequence(
        name=algorithm[:64], family=codes.cid7162.ArtificialIntelligence, version=__version__,
        source="medseg", parameters=params)
    segment = hd.seg.SegmentDescription(
        segment_number=1, segment_label=label,
        segmented_property_category=codes.cid7150.AnatomicalStructure,
        segmented_property_type=getattr(codes.SCT, prop),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algo,
        tracking_uid=hd.UID(), tracking_id=f"medseg {label}")
    with warnings.catch_warnings():  # highdicom's advice on the source's person-name style
        warnings.simplefilter("ignore", UserWarning)
        seg = _segmentation(hd, images, mask, segment, algorithm, __version__, label)
    atomic_write_with(path, lambda tmp: seg.save_as(str(tmp)), suffix=".dcm")


def _segmentation(hd: Any, images: list, mask: np.ndarray, segment: Any, algorithm: str,
                  version: str, label: str) -> Any:
    return hd.seg.Segmentation(
        source_images=images, pixel_array=(np.asarray(mask) > 0).astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=[segment],
        series_instance_uid=hd.UID(), series_number=int(getattr(images[0], "SeriesNumber", 0) or 0) + 1000,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="medseg",
        manufacturer_model_name=algorithm[:64], software_versions=f"medseg {version}",
        device_serial_number="none", series_description=f"medseg {label}"[:64],
        omit_empty_frames=bool(np.any(mask)))
