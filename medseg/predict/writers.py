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

Checkpoints that record their labels (:attr:`~medseg.predict.Predictor.per_class`:
every nnunet dataset, a built-in one trained with several labels) write per class
(:class:`Naming`):

=============================  ====================================================
``<case><ending>``             nnunet: the label map, uint8 label values, named and
                               typed as nnU-Net writes it (the input's ending:
                               ``.nii.gz``, ``.nrrd``, ``.mha``; ``.mhd`` → ``.mha``,
                               ``.nhdr`` → ``.nrrd``; frames ``.png``; DICOM ``.nii.gz``)
``_mask.nii.gz``               a built-in dataset with several labels: label values
``_prob_<label>.nii.gz``       one float32 map per class, background included, in
                               label-value order; they sum to 1 in every voxel
``_seg.dcm``                   one segment per label (segment number = label value)
=============================  ====================================================
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
from ..io import atomic_write_from, atomic_write_image, check_output_file
from .inputs import PredictInput

#: --output suffixes that make it a file; the mask kinds each can hold
FILE_SUFFIXES = {".nii.gz": "ct", ".nii": "ct", ".png": "frame", ".dcm": "ct"}
#: suffixes a folder must not end in (it would look like a file)
_FILE_LIKE = (".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".nrrd", ".nhdr", ".mha", ".mhd",
              ".gz", ".zip", ".npy", ".npz", ".json", ".csv", ".txt", ".dicom", ".ima", ".h5",
              ".pt", ".ckpt", ".pkl")
FORMATS = ("nifti", "dicom-seg", "both")
#: nnunet checkpoints: --output may also name an NRRD or MHA label map
NNUNET_FILE_SUFFIXES = {**FILE_SUFFIXES, ".nrrd": "ct", ".mha": "ct"}


@dataclass(frozen=True)
class Naming:
    """How a checkpoint's outputs are named: ``nnunet`` — label maps ``<case><ending>`` as
    nnU-Net writes them; ``labels`` (name → value, background included) — one
    probability map per class (None: the single foreground map of binary checkpoints)."""

    nnunet: bool = False
    labels: dict[str, int] | None = None

    @property
    def suffixes(self) -> dict[str, str]:
        return NNUNET_FILE_SUFFIXES if self.nnunet else FILE_SUFFIXES

    def prob_endings(self) -> dict[str, str]:
        """Role ``prob:<value>`` → ``_prob_<label>.nii.gz`` for every class, by value; a label
        name is kept to letters, digits, ``.``, ``-`` and ``_`` (others → ``_``), and names
        that would then coincide get ``-<value>`` appended."""
        assert self.labels is not None
        safe = {v: re.sub(r"[^A-Za-z0-9_.-]+", "_", n).strip("_") or f"label{v}"
                for n, v in self.labels.items()}
        counts: dict[str, int] = {}
        for name in safe.values():
            counts[name.lower()] = counts.get(name.lower(), 0) + 1
        return {f"prob:{v}": f"_prob_{name}{'' if counts[name.lower()] == 1 else f'-{v}'}.nii.gz"
                for v, name in sorted(safe.items())}


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


def file_suffix(path: Path, suffixes: dict[str, str] = FILE_SUFFIXES) -> str | None:
    name = path.name.lower()
    return next((s for s in suffixes if name.endswith(s)), None)


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


def _roles(inp: PredictInput, wanted: Wanted, passes: int, naming: Naming) -> dict[str, str]:
    """Role → file-name ending for one input."""
    from .nnunet_inputs import output_ending

    roles: dict[str, str] = {}
    if wanted.fmt in ("nifti", "both"):
        if naming.nnunet:
            roles["mask"] = output_ending(inp)
        else:
            roles["mask"] = "_mask.nii.gz" if inp.kind == "ct" else "_mask.png"
    if wanted.fmt in ("dicom-seg", "both"):
        roles["seg"] = "_seg.dcm"
    if wanted.probabilities and naming.labels is not None:
        roles.update(naming.prob_endings())
    elif wanted.probabilities:
        roles["prob"] = "_prob.nii.gz"
    if wanted.uncertainty:
        roles["uncertainty"] = "_uncertainty.nii.gz"
        if passes > 1:
            roles["variance"] = "_variance.nii.gz"
    if wanted.overlay:
        roles["overlay"] = "_overlay.png"
    return roles


def plan_outputs(inputs: Sequence[PredictInput], output: Path, wanted: Wanted,
                 passes: int, naming: Naming = Naming()) -> list[OutputPlan]:
    """Every input's output paths under ``--output`` (a folder, or with one input a file).

    With a DICOM SEG wanted, every DICOM input's files must also carry what a
    Segmentation references (:func:`check_seg_sources`), so a refusal comes before
    anything is written.
    """
    if wanted.fmt in ("dicom-seg", "both"):
        check_seg_sources(inputs)
    suffix = file_suffix(output, naming.suffixes)
    if suffix is None:
        _check_folder(output)
        return [OutputPlan(output, {r: output / f"{i.name}{end}"
                                    for r, end in _roles(i, wanted, passes, naming).items()})
                for i in inputs]
    if len(inputs) != 1:
        raise MedsegError(f"--output {output}: names a {suffix} file, but {len(inputs)} inputs "
                          "were given; give a folder")
    (inp,) = inputs
    if suffix != ".dcm" and wanted.fmt == "dicom-seg":
        raise MedsegError(f"--output {output}: a {suffix} file with --format dicom-seg; name a "
                          ".dcm file or a folder")
    if naming.suffixes[suffix] != inp.kind:
        holds = ".nii.gz, .nii or .dcm" if inp.kind == "ct" else ".png"
        raise MedsegError(f"--output {output}: a {suffix} file cannot hold the mask of "
                          f"{inp.source} ({'a CT volume' if inp.kind == 'ct' else 'a frame'}: {holds})")
    stem = output.name[: -len(suffix)]
    paths = {r: output.parent / f"{stem}{end}" for r, end in _roles(inp, wanted, passes, naming).items()}
    paths["seg" if suffix == ".dcm" else "mask"] = output
    return [OutputPlan(output.parent, paths)]


def _check_folder(output: Path) -> None:
    if output.exists() and not output.is_dir():
        raise MedsegError(f"{output}: --output exists and is not a folder")
    if not output.exists() and output.name.lower().endswith(_FILE_LIKE):
        raise MedsegError(f"--output {output}: looks like a file name, which is not an output "
                          "format; give a .nii.gz, .nii, .png or .dcm file or a folder")


def check_targets(plans: Sequence[OutputPlan], force: bool,
                  inputs: Sequence[PredictInput] = ()) -> None:
    """No output may be a folder, a device, FIFO, socket or link, or a file of an input (any
    file a DICOM input reads, even through a link or another spelling; refused even with
    ``force``); no two outputs may share a name; an existing file needs ``force``."""
    sources = list(dict.fromkeys(p for inp in inputs for p in (inp.source, inp.path, *inp.channels, *inp.files)))
    seen: dict[Path, Path] = {}
    for plan in plans:
        for target in plan.paths.values():
            key = Path(os.path.abspath(target))
            if key in seen:
                raise MedsegError(f"{target}: two outputs would have this name (inputs with the "
                                  "same name); predict them into separate folders")
            seen[key] = target
            check_output_file(target, force=force, inputs=sources, what="prediction")
    input_folders = {Path(os.path.abspath(p)).parent for p in sources if Path(p).is_file()}
    for plan in plans:  # --force: an existing file under an output name must look like medseg's
        for role, target in plan.paths.items():
            if target.is_file() and Path(os.path.abspath(target)).parent in input_folders:
                raise MedsegError(f"{target}: exists in a folder of this command's inputs, where a file of "
                                  "yours (a label, say) cannot be told from an earlier prediction; refusing "
                                  "to replace it even with --force (predict into another --output folder)")
            if target.is_file():
                problem = foreign_content(role, target)
                if problem:
                    raise MedsegError(f"{target}: exists and is {problem}, not a medseg {role} "
                                      "output; refusing to replace it even with --force (move it away)")


#: the pixel types medseg writes per role (SimpleITK pixel type names)
_ROLE_PIXELS = {"mask": ("8-bit unsigned integer",), "prob": ("32-bit float",),
                "uncertainty": ("32-bit float",), "variance": ("32-bit float",)}


def foreign_content(role: str, path: Path) -> str | None:
    """What an existing file under an output name holds when it is readable as an image or
    DICOM that medseg would not write for ``role`` (None: medseg's, or not readable as one —
    a damaged earlier output). A frame named ``a_mask.png`` (the user's image, not a 0/255
    mask), a CT volume named ``x_mask.nii.gz`` or a CT slice named ``x_seg.dcm`` is refused."""
    name = path.name.lower()
    kind = "prob" if role.startswith("prob") else role
    if name.endswith(".png") and kind in ("mask", "overlay"):
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as img:
                mode = img.mode
                hist = img.histogram() if mode == "L" else []
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
            return None
        values = [v for v, n in enumerate(hist) if n]
        if kind == "overlay":
            return None if mode in ("RGB", "RGBA") else f"a {mode} image"
        if mode != "L":
            return f"a {mode} image"
        # a mask holds 0/255, a label map small label values; a frame holds its grey levels
        if set(values) <= {0, 255} or max(values, default=0) < 64:
            return None
        return f"a grayscale image of {len(values)} grey levels"
    if name.endswith(".dcm") and kind == "seg":
        import pydicom

        try:
            modality = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=["Modality"]).get("Modality")
        except Exception:  # noqa: BLE001 - not readable as DICOM: a damaged earlier output
            return None
        return None if modality in (None, "SEG") else f"a DICOM {modality} image"
    if kind in _ROLE_PIXELS and name.endswith((".nii.gz", ".nii", ".nrrd", ".mha")):
        import SimpleITK as sitk

        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        try:
            reader.ReadImageInformation()
        except RuntimeError:
            return None
        pixel = sitk.GetPixelIDValueAsString(reader.GetPixelID())
        return None if pixel in _ROLE_PIXELS[kind] else f"an image of {pixel} voxels"
    return None


# --------------------------------------------------------------------------- NIfTI / PNG


def write_nifti(path: Path, array: np.ndarray, geometry: Any | None, dtype: Any) -> None:
    """``array`` ((Z, Y, X) or a frame's (Y, X)) as gzip NIfTI, in ``geometry`` when given."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=dtype))
    if geometry is not None:
        geometry.apply_to(img)
    atomic_write_image(path, img, True, suffix=".nii.gz")


def _png_bytes(image: Any) -> Any:
    """A PIL image as PNG, written to memory (then checked to the byte on disk)."""
    return lambda buffer: image.save(buffer, format="PNG")


def write_label_map(path: Path, labels: np.ndarray, geometry: Any | None) -> None:
    """A uint8 label map (label values), typed by the file's ending as nnU-Net writes it:
    ``.png`` an 8-bit grayscale frame of the values (not scaled); ``.nii.gz``, ``.nii``,
    ``.nrrd``, ``.mha`` through SimpleITK in ``geometry`` (compressed where the format
    allows)."""
    import SimpleITK as sitk

    from .nnunet_inputs import ending_of

    array = np.ascontiguousarray(labels, dtype=np.uint8)
    ending = ending_of(path) or path.suffix
    if ending == ".png":
        from PIL import Image

        frame = Image.fromarray(array.reshape(array.shape[-2:]), mode="L")
        atomic_write_from(path, _png_bytes(frame))
        return
    img = sitk.GetImageFromArray(array)
    if geometry is not None:
        geometry.apply_to(img)
    atomic_write_image(path, img, ending != ".nii", suffix=ending)


def write_frame_mask(path: Path, mask: np.ndarray) -> None:
    """8-bit PNG, 0 background / 255 foreground (as BAGLS' ``_seg.png``)."""
    from PIL import Image

    img = Image.fromarray((mask > 0).astype(np.uint8) * 255, mode="L")
    atomic_write_from(path, _png_bytes(img))


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
    atomic_write_from(path, _png_bytes(pil))


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
    atomic_write_from(path, lambda buffer: fig.savefig(buffer, format="png"))


def display_window(channel: np.ndarray, scheme: dict[str, Any]) -> tuple[float, float]:
    """The intensity range an overlay shows a channel in: a CT channel's plan clip (the
    foreground 0.5–99.5 percentiles), else the image's own 0.5–99.5 percentiles."""
    if scheme.get("scheme") == "ct" and len(scheme.get("clip") or ()) == 2:
        lo, hi = (float(v) for v in scheme["clip"])
    else:
        lo, hi = (float(v) for v in np.percentile(np.asarray(channel, dtype=np.float64), [0.5, 99.5]))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def write_labels_overlay(path: Path, name: str, image: np.ndarray, mask: np.ndarray,
                         window: Sequence[float], labels: dict[str, int],
                         spacing_xy: Sequence[float] = (1.0, 1.0)) -> None:
    """Several labels drawn on the image, one colour per label (:data:`PALETTE`, as the
    SEG's segments), with a legend: a volume (Z, Y, X) as up to 3 axial slices across the
    labels' extent, a frame ((H, W) or (H, W, 3)) as itself."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    frame = mask.ndim == 2
    picks = [None] if frame else overlay_slices(mask > 0)
    fig = Figure(figsize=(3.4 * len(picks) + 1.4, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    aspect = float(spacing_xy[1]) / float(spacing_xy[0])
    foreground = [(n, v) for n, v in sorted(labels.items(), key=lambda kv: kv[1]) if v]
    for i, k in enumerate(picks):
        ax = fig.add_subplot(1, len(picks), i + 1)
        img, m = (image, mask) if k is None else (image[k], mask[k])
        if img.ndim == 3:
            rgb = np.asarray(img, dtype=np.float32)
            ax.imshow((rgb / max(1.0, float(rgb.max()))).clip(0, 1), aspect=aspect, interpolation="nearest")
        else:
            ax.imshow(img, cmap="gray", vmin=window[0], vmax=window[1], aspect=aspect,
                      interpolation="nearest")
        rgba = np.zeros((*m.shape, 4), dtype=np.float32)
        for _, v in foreground:
            r, g, b = PALETTE[(v - 1) % len(PALETTE)]
            rgba[m == v] = (r / 255, g / 255, b / 255, 0.45)
        ax.imshow(rgba, aspect=aspect, interpolation="nearest")
        where = "" if k is None else f"z={k}  "
        ax.set_title(f"{where}({int(np.count_nonzero(m))} px)", fontsize=9)
        ax.set_axis_off()
    handles = [Patch(color=np.array(PALETTE[(v - 1) % len(PALETTE)]) / 255, label=f"{v} {n}")
               for n, v in foreground]
    fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False)
    fig.suptitle(f"{name}: predicted labels", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1 - 1.4 / (3.4 * len(picks) + 1.4), 1))
    atomic_write_from(path, lambda buffer: fig.savefig(buffer, format="png"))


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
                    algorithm: str, checkpoints: Sequence[Path], settings: dict[str, str],
                    labels: dict[str, int] | None = None, title: str | None = None) -> None:
    """A binary DICOM Segmentation of ``mask`` (Z, Y, X) referencing the source slices.

    ``sources`` are the series' files in the mask's z order; the SEG references
    their series, SOP instances and frame of reference, holds one segment whose
    algorithm identification names medseg, the network and the checkpoint(s) (by
    :func:`checkpoint_labels`: file name and content hash, no local path), and
    omits empty frames. An all-empty mask keeps every frame (a SEG needs at least
    one), which highdicom would otherwise announce on the console.

    With ``labels`` (name → value, several labels or an nnunet dataset) ``mask`` holds
    label values and the SEG one segment per foreground label: segment number = label
    value, segment label = the label's name, its SNOMED CT property from
    :func:`segment_property` (a structure medseg knows, else the generic Tissue);
    ``title`` (the dataset's name) is the series description.
    """
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    from .. import __version__

    images = [_with_type2(pydicom.dcmread(str(p), stop_before_pixels=True)) for p in sources]
    key = "checkpoint" if len(checkpoints) == 1 else "checkpoints"
    params = {key: " ".join(checkpoint_labels(checkpoints)), **settings}
    algo = hd.AlgorithmIdentificationSequence(
        name=algorithm[:64], family=codes.cid7162.ArtificialIntelligence, version=__version__,
        source="medseg", parameters=params)
    if labels is None:
        label, prop = SEGMENTED[dataset]
        segments = [hd.seg.SegmentDescription(
            segment_number=1, segment_label=label,
            segmented_property_category=codes.cid7150.AnatomicalStructure,
            segmented_property_type=getattr(codes.SCT, prop),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algo,
            tracking_uid=hd.UID(), tracking_id=f"medseg {label}")]
        pixels = (np.asarray(mask) > 0).astype(np.uint8)
    else:
        foreground = [(n, int(v)) for n, v in sorted(labels.items(), key=lambda kv: int(kv[1])) if int(v)]
        segments = [_segment(hd, name, value, algo) for name, value in foreground]
        pixels = np.asarray(mask, dtype=np.uint8)
        label = title or dataset
    with warnings.catch_warnings():  # highdicom's advice on the source's person-name style
        warnings.simplefilter("ignore", UserWarning)
        seg = _segmentation(hd, images, pixels, segments, algorithm, __version__, label)
    atomic_write_from(path, lambda buffer: seg.save_as(buffer))


def _segmentation(hd: Any, images: list, pixels: np.ndarray, segments: list, algorithm: str,
                  version: str, label: str) -> Any:
    return hd.seg.Segmentation(
        source_images=images, pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=segments,
        series_instance_uid=hd.UID(), series_number=int(getattr(images[0], "SeriesNumber", 0) or 0) + 1000,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="medseg",
        manufacturer_model_name=algorithm[:64], software_versions=f"medseg {version}",
        device_serial_number="none", series_description=f"medseg {label}"[:64],
        omit_empty_frames=bool(np.any(pixels)))


# --------------------------------------------------------------------------- SNOMED CT

#: structures medseg names by SNOMED CT: a label's words (lower case, ``_``/``-`` as spaces,
#: laterality split off) → keyword of ``pydicom.sr.codedict.codes.SCT``. Category: Anatomical
#: Structure, or Morphologically Abnormal Structure for the ones in :data:`ABNORMAL`.
STRUCTURES = {
    "pancreas": "Pancreas", "liver": "Liver", "spleen": "Spleen", "kidney": "Kidney",
    "kidneys": "Kidney", "aorta": "Aorta", "stomach": "Stomach", "gallbladder": "Gallbladder",
    "gall bladder": "Gallbladder", "esophagus": "Esophagus", "oesophagus": "Esophagus",
    "duodenum": "Duodenum", "inferior vena cava": "InferiorVenaCava", "ivc": "InferiorVenaCava",
    "vena cava inferior": "InferiorVenaCava", "adrenal gland": "AdrenalGland",
    "adrenal": "AdrenalGland", "portal vein": "PortalVein", "splenic vein": "SplenicVein",
    "hepatic vein": "HepaticVein", "urinary bladder": "Bladder", "bladder": "Bladder",
    "prostate": "Prostate", "heart": "Heart", "lung": "Lung", "lungs": "Lung", "brain": "Brain",
    "colon": "Colon", "hippocampus": "Hippocampus", "spinal cord": "SpinalCord",
    "small intestine": "SmallIntestine", "small bowel": "SmallIntestine", "rectum": "Rectum",
    "trachea": "Trachea", "uterus": "Uterus", "thyroid": "Thyroid", "thyroid gland": "Thyroid",
    "femur": "Femur", "vertebra": "Vertebra", "rib": "Rib", "bone": "Bone", "muscle": "Muscle",
    "skin": "Skin", "glottis": "Glottis", "glottal area": "Glottis",
    "tumour": "Neoplasm", "tumor": "Neoplasm", "neoplasm": "Neoplasm", "lesion": "Lesion",
    "edema": "Edema", "oedema": "Edema", "necrosis": "Necrosis", "cyst": "Cyst",
}
ABNORMAL = {"Neoplasm", "Lesion", "Edema", "Necrosis", "Cyst"}
#: words that make any label a neoplasm ("pancreatic tumour", "enhancing tumor", "liver cancer")
_NEOPLASM_WORDS = {"tumour", "tumor", "tumours", "tumors", "neoplasm", "cancer", "carcinoma",
                   "metastasis", "metastases"}
_SIDES = {"left": "Left", "l": "Left", "lt": "Left", "right": "Right", "r": "Right", "rt": "Right"}


def segment_property(name: str) -> tuple[Any, Any, Any | None]:
    """(category, type, laterality modifier or None) of a label named ``name``, as
    ``pydicom.sr.codedict`` codes: a structure of :data:`STRUCTURES` (``kidney_left`` →
    Kidney with the modifier Left, as DICOM's segmentation templates code laterality),
    any name with a tumour word → Neoplasm, else the generic Tissue / Tissue (3D Slicer's
    default for a segment it has no term for); the segment label keeps the name."""
    from pydicom.sr.codedict import codes

    words = re.sub(r"[\s_\-]+", " ", name.strip().lower()).split()
    side = None
    if len(words) > 1 and words[0] in _SIDES and words[0] not in ("l", "r"):
        side, words = _SIDES[words[0]], words[1:]
    elif len(words) > 1 and words[-1] in _SIDES:
        side, words = _SIDES[words[-1]], words[:-1]
    keyword = STRUCTURES.get(" ".join(words))
    if keyword is None and _NEOPLASM_WORDS & set(words):
        keyword = "Neoplasm"
    if keyword is None:
        return codes.cid7150.Tissue, codes.SCT.Tissue, None
    category = (codes.cid7150.MorphologicallyAbnormalStructure if keyword in ABNORMAL
                else codes.cid7150.AnatomicalStructure)
    return category, getattr(codes.SCT, keyword), (getattr(codes.SCT, side) if side else None)


#: segment colours (RGB), by label value (1 → the first): distinct in viewers
PALETTE = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
           (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
           (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0))


def _segment(hd: Any, name: str, value: int, algo: Any) -> Any:
    category, prop, side = segment_property(name)
    segment = hd.seg.SegmentDescription(
        segment_number=value, segment_label=name[:64], segmented_property_category=category,
        segmented_property_type=prop, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algo, tracking_uid=hd.UID(), tracking_id=f"medseg {name}"[:64],
        display_color=hd.color.CIELabColor.from_rgb(*PALETTE[(value - 1) % len(PALETTE)]))
    if side is not None:  # PS3.3 C.8.20.2: inside the property type's item
        segment.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
            hd.sr.CodedConcept(side.value, side.scheme_designator, side.meaning)]
    return segment
