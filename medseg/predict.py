"""``medseg predict``: masks for new scans and frames from a trained checkpoint.

The checkpoint carries its preprocessing (dataset, window, size, channels; see
:mod:`medseg.training.checkpoint`), so a new input goes through exactly what the
training and test cases went through: the dataset reader
(:func:`medseg.data.read_ct_volume` / :func:`medseg.data.read_frame_image`),
:func:`medseg.data.preprocess.preprocess_ct` / ``preprocess_frame``, the float16
rounding of the slice cache, and :func:`medseg.data.preprocess.predict_slices`
(softmax → bilinear resampling of the class probabilities to the native slice
grid → arg-max) — the very function ``medseg evaluate`` scores with, so a mask
written here has the DICE that ``cases.csv`` reports for the same case.

Inputs (see :data:`medseg.commands.predict.INPUT_RULES`): a DICOM series folder, a single DICOM file, a
NIfTI file, a PNG/JPEG frame, or a folder of those.

Outputs, in the output folder:

* CT (Pancreas-CT checkpoints): ``<name>_mask.nii.gz`` — uint8 {0, 1}, the
  input's own voxel grid and geometry (size, origin, spacing, direction as
  SimpleITK reads the input), gzip-compressed, so it opens aligned on the scan
  in ITK-SNAP or 3D Slicer.
* Frames (BAGLS checkpoints): ``<name>_mask.png`` — 8-bit grayscale of the
  frame's size, 0 background / 255 glottis (the convention of BAGLS'
  ``_seg.png``).
* ``--overlay``: ``<name>_overlay.png`` — CT: up to three axial slices (the one
  with the largest predicted area and two more across the mask's extent) in the
  checkpoint's HU window with the mask filled and outlined; frames: the frame
  at its own size with the mask blended in and outlined.

No partial outputs: the checkpoint and every input are checked (formats,
headers, file sizes, kinds, names, existing outputs) before anything is
written; the masks are then written atomically into a hidden staging folder
inside the output folder and moved into place only when every input has
succeeded. Any failure removes the staging folder, so the output folder holds
either all new files or none.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from .errors import CheckpointError, DataError, MedsegError
from .io import atomic_write_with

NIFTI_SUFFIXES = (".nii.gz", ".nii")
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
#: files that never hold an image: not even opened when a folder is searched
_SKIP_SUFFIXES = (".meta", ".json", ".txt", ".csv", ".md", ".yaml", ".yml", ".xml", ".html",
                  ".pdf", ".zip", ".gz", ".tar", ".npz", ".npy", ".ckpt", ".pt", ".py", ".log")
#: file names skipped when a folder is expanded: BAGLS label masks and predict's own outputs
_SKIP_NAME_ENDINGS = ("_seg.png", "_mask.png", "_mask.nii.gz", "_overlay.png")



# --------------------------------------------------------------------------- inputs


@dataclass
class PredictInput:
    """One case to predict: a CT volume or a frame."""

    name: str
    path: Path              #: what the reader opens (series folder, file)
    kind: str               #: "ct" | "frame"
    fmt: str                #: "dicom-series" | "dicom-file" | "nifti" | "frame"
    source: Path            #: what the user named (or the folder found for it)
    files: list[Path] = field(default_factory=list)  #: DICOM files of a series


def _classify(path: Path) -> str | None:
    """'nifti' | 'frame' | 'dicom' | None (not an image) for one file."""
    name = path.name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(FRAME_SUFFIXES):
        return "frame"
    if name.endswith(DICOM_SUFFIXES):
        return "dicom"
    if name.endswith(_SKIP_SUFFIXES):
        return None
    return "dicom" if _has_dicom_preamble(path) else None


def _has_dicom_preamble(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


_DICOM_TAGS = ["SeriesInstanceUID", "Rows", "Columns", "BitsAllocated", "SamplesPerPixel",
               "NumberOfFrames"]
_UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}


def _dicom_header(path: Path) -> Any:
    """Read one DICOM header (no pixels) and check the file is long enough for its pixels."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_DICOM_TAGS)
    except InvalidDicomError:
        raise DataError(f"{path}: not a DICOM file") from None
    except Exception as exc:
        raise DataError(f"{path}: unreadable DICOM file ({_why(exc)})") from None
    if "Rows" not in ds or "Columns" not in ds:
        raise DataError(f"{path}: DICOM file without an image (no Rows/Columns)")
    ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    if ts in _UNCOMPRESSED or not ts:
        frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
        need = (int(ds.Rows) * int(ds.Columns) * int(getattr(ds, "SamplesPerPixel", 1) or 1)
                * (int(getattr(ds, "BitsAllocated", 16) or 16) // 8) * frames)
        if path.stat().st_size < need:
            raise DataError(f"{path}: truncated DICOM file ({path.stat().st_size} bytes, "
                            f"its pixel data alone needs {need})")
    return ds


def _why(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__


def _nifti_stem(path: Path) -> str:
    name = path.name
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _file_input(path: Path, kind: str, source: Path | None = None) -> PredictInput:
    source = source or path
    if kind == "nifti":
        return PredictInput(_nifti_stem(path), path, "ct", "nifti", source)
    if kind == "frame":
        return PredictInput(path.stem, path, "frame", "frame", source)
    return PredictInput(path.stem, path, "ct", "dicom-file", source)


def _folder_inputs(folder: Path) -> list[PredictInput]:
    """Expand a folder by the rule in :data:`medseg.commands.predict.INPUT_RULES` (one walk, headers read once)."""
    files: dict[Path, list[tuple[Path, str]]] = {}  # directory -> its image files
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        d = Path(dirpath)
        found = []
        for fn in sorted(filenames):
            if fn.startswith(".") or fn.lower().endswith(_SKIP_NAME_ENDINGS):
                continue
            p = d / fn
            kind = _classify(p)
            if kind is not None:
                found.append((p, kind))
        files[d] = found
    series_of: dict[Path, str] = {}
    slice_size: dict[Path, tuple[int, int]] = {}
    for found in files.values():
        for p, kind in found:
            if kind == "dicom":  # the header of every DICOM file is read (and checked) once, here
                ds = _dicom_header(p)
                uid = str(getattr(ds, "SeriesInstanceUID", "") or "")
                if not uid:
                    raise DataError(f"{p}: DICOM file without a SeriesInstanceUID")
                series_of[p] = uid
                slice_size[p] = (int(ds.Rows), int(ds.Columns))

    def subtree(d: Path) -> list[tuple[Path, str]]:
        out = []
        for k, v in files.items():
            if k == d or d in k.parents:
                out.extend(v)
        return out

    def expand(d: Path) -> list[PredictInput]:
        below = subtree(d)
        if not below:
            return []
        dicoms = [p for p, kind in below if kind == "dicom"]
        uids = {series_of[p] for p in dicoms}
        if dicoms and len(uids) == 1 and len(dicoms) == len(below):
            sizes = sorted({slice_size[p] for p in dicoms})
            if len(sizes) > 1:
                raise DataError(f"{d}: the DICOM series mixes slice sizes {sizes}")
            dirs = {p.parent for p in dicoms}
            path = dirs.pop() if len(dirs) == 1 else d
            return [PredictInput(d.resolve().name, path, "ct", "dicom-series", d, sorted(dicoms))]
        out: list[PredictInput] = []
        loose = [p for p, kind in files.get(d, []) if kind == "dicom"]
        if loose:
            raise DataError(f"{d}: holds DICOM files ({loose[0].name}, ...) next to other series or "
                            "images; give each DICOM series its own folder")
        for p, kind in files.get(d, []):
            out.append(_file_input(p, kind))
        for sub in sorted(k for k in files if k.parent == d):
            out.extend(expand(sub))
        return out

    inputs = expand(folder)
    if not inputs:
        raise DataError(f"{folder}: no supported images found (DICOM, NIfTI .nii/.nii.gz, "
                        "PNG/JPEG)")
    return inputs


def discover_inputs(paths: Iterable[str | os.PathLike]) -> list[PredictInput]:
    """Turn the user's INPUT arguments into cases (see :data:`medseg.commands.predict.INPUT_RULES`)."""
    inputs: list[PredictInput] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            inputs.extend(_folder_inputs(p))
        elif p.is_file():
            kind = _classify(p)
            if kind is None:
                raise DataError(f"{p}: unsupported format (expected a DICOM file or series folder, "
                                "NIfTI .nii/.nii.gz, or a PNG/JPEG frame)")
            inputs.append(_file_input(p, kind))
        else:
            raise DataError(f"{p}: no such file or folder")
    if not inputs:
        raise DataError("no inputs given")
    return inputs


def check_inputs(inputs: Sequence[PredictInput], dataset: str, checkpoint: Path) -> None:
    """Kind, name and header checks before anything is read in full or written."""
    expected = "ct" if dataset == "pancreas" else "frame"
    for inp in inputs:
        if inp.kind != expected:
            what = "a CT volume" if inp.kind == "ct" else "a PNG/JPEG frame"
            wants = ("CT volumes (DICOM series/file, NIfTI)" if expected == "ct"
                     else "frames (PNG/JPEG)")
            raise DataError(f"{inp.source}: is {what}, but checkpoint {checkpoint} was trained on "
                            f"{dataset} and takes {wants}")
    seen: dict[str, Path] = {}
    for inp in inputs:
        if inp.name in seen:
            raise DataError(f"{inp.source}: its output name '{inp.name}' is also the name of "
                            f"{seen[inp.name]}; give inputs distinct names")
        seen[inp.name] = inp.source
    for inp in inputs:
        _check_header(inp)


def _check_header(inp: PredictInput) -> None:
    """Cheap integrity checks: the parts of a file that can be verified without decoding it."""
    if inp.fmt == "dicom-file":
        _dicom_header(inp.path)
    elif inp.fmt == "dicom-series":
        pass  # every header was read and checked when the folder was searched
    elif inp.fmt == "nifti":
        import SimpleITK as sitk

        reader = sitk.ImageFileReader()
        reader.SetFileName(str(inp.path))
        try:
            reader.ReadImageInformation()
        except RuntimeError:
            raise DataError(f"{inp.path}: unreadable NIfTI file (bad or truncated header)") from None
        if reader.GetDimension() != 3 and not (reader.GetDimension() == 4 and reader.GetSize()[3] == 1):
            raise DataError(f"{inp.path}: a {reader.GetDimension()}D image; a CT volume must be 3D")
        # the data itself (truncation, NaN) is checked by the reader, medseg.data.ct,
        # when the case is read; outputs are staged, so a late failure leaves nothing
    elif inp.fmt == "frame":
        from PIL import Image

        try:
            with Image.open(inp.path) as im:
                im.verify()  # PNG: every chunk's CRC; JPEG: the markers
        except Exception as exc:
            raise DataError(f"{inp.path}: unreadable image ({_why(exc)})") from None


# --------------------------------------------------------------------------- model


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` → cuda when available, else cpu; ``cpu``, ``cuda``, ``cuda:N`` as given."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise MedsegError(f"--device {device}: expected cpu, cuda or auto") from None
    if dev.type not in ("cpu", "cuda"):
        raise MedsegError(f"--device {device}: expected cpu, cuda or auto")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MedsegError(f"--device {device}: no CUDA GPU is available (use --device cpu or auto)")
    return dev


def load_predictor(checkpoint: str | os.PathLike, device: str | torch.device = "cpu"):
    """The checkpoint's network (eval mode, on ``device``) and its metadata."""
    from .training.checkpoint import build_model_from_checkpoint

    model, meta = build_model_from_checkpoint(checkpoint)
    pre = meta.get("preprocessing") if isinstance(meta, dict) else None
    if not isinstance(pre, dict) or pre.get("dataset") not in ("pancreas", "bagls") \
            or "size" not in pre or (pre["dataset"] == "pancreas" and "window" not in pre):
        raise CheckpointError(f"{checkpoint}: incompatible checkpoint (its preprocessing "
                              "metadata lacks dataset/size/window)")
    return model.to(resolve_device(device)).eval(), meta


# --------------------------------------------------------------------------- one case


@dataclass
class CaseResult:
    """What was written for one input."""

    name: str
    source: Path
    kind: str
    shape: tuple[int, ...]          #: CT (z, y, x); frame (h, w)
    foreground: int                 #: predicted voxels/pixels
    mask: Path                      #: final path of the mask
    overlay: Path | None = None
    seconds: float = 0.0


def _read_ct(inp: PredictInput):
    from .data import read_ct_volume

    try:
        hu, geometry = read_ct_volume(inp.path)
    except MedsegError:
        raise
    except Exception as exc:
        raise DataError(f"{inp.path}: unreadable CT volume ({_why(exc)})") from None
    hu = np.asarray(hu)
    if hu.ndim != 3 or 0 in hu.shape:
        raise DataError(f"{inp.path}: not a 3D CT volume (array shape {hu.shape})")
    return hu, geometry


def _read_frame(inp: PredictInput) -> np.ndarray:
    from .data import read_frame_image

    try:
        image = read_frame_image(inp.path)
    except MedsegError:
        raise
    except Exception as exc:
        raise DataError(f"{inp.path}: unreadable image ({_why(exc)})") from None
    return np.asarray(image)


def predict_ct(model: torch.nn.Module, hu: np.ndarray, pre: dict, batch_size: int) -> np.ndarray:
    """(Z, Y, X) HU volume → (Z, Y, X) uint8 {0, 1} mask on the same grid."""
    from .data.preprocess import as_cached, predict_slices, preprocess_ct

    x = as_cached(preprocess_ct(hu, pre["window"], pre["size"]))
    return predict_slices(model, x, hu.shape[-2:], batch_size).numpy()


def predict_frame(model: torch.nn.Module, image: np.ndarray, pre: dict, batch_size: int = 1) -> np.ndarray:
    """(H, W[, C]) frame → (H, W) uint8 {0, 1} mask of the frame's size."""
    from .data.preprocess import as_cached, predict_slices, preprocess_frame

    x = as_cached(preprocess_frame(image, int(pre["channels"]), pre["size"])[None])
    return predict_slices(model, x, image.shape[:2], batch_size)[0].numpy()


def write_ct_mask(path: Path, mask: np.ndarray, geometry: Any) -> None:
    """uint8 NIfTI (gzip) of ``mask`` (z, y, x) carrying the input's geometry."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(mask, dtype=np.uint8))
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


# --------------------------------------------------------------------------- the job


@dataclass
class PredictReport:
    output: Path
    cases: list[CaseResult]
    checkpoint: Path
    dataset: str
    device: str
    seconds: float


def output_names(inp: PredictInput, overlay: bool) -> list[str]:
    names = [f"{inp.name}_mask.nii.gz" if inp.kind == "ct" else f"{inp.name}_mask.png"]
    if overlay:
        names.append(f"{inp.name}_overlay.png")
    return names


def _check_outputs(inputs: Sequence[PredictInput], output: Path, force: bool, overlay: bool) -> None:
    if output.exists() and not output.is_dir():
        raise MedsegError(f"{output}: --output exists and is not a folder")
    for inp in inputs:
        for n in output_names(inp, overlay):
            target = output / n
            if target.is_dir():
                raise MedsegError(f"{target}: exists and is a folder")
            if target.exists() and not force:
                raise MedsegError(f"{target}: exists (use --force to replace it)")


def predict(checkpoint: str | os.PathLike, inputs: Sequence[str | os.PathLike],
            output: str | os.PathLike, *, force: bool = False, overlay: bool = False,
            batch_size: int | None = None, device: str = "auto",
            progress: bool = True) -> PredictReport:
    """Predict masks for ``inputs`` with ``checkpoint``; write them into ``output``.

    Everything that can be checked is checked before anything is written; the
    files appear in ``output`` only once every input has succeeded.
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    checkpoint = Path(checkpoint)
    output = Path(output)
    if batch_size is not None and batch_size < 1:
        raise MedsegError(f"--batch-size {batch_size}: must be >= 1")
    dev = resolve_device(device)
    model, meta = load_predictor(checkpoint, dev)
    pre = meta["preprocessing"]
    if batch_size is None:
        batch_size = int(((meta.get("config") or {}).get("eval") or {}).get("batch_size") or 32)
    cases = discover_inputs(inputs)
    check_inputs(cases, pre["dataset"], checkpoint)
    _check_outputs(cases, output, force, overlay)

    created = not output.exists()
    try:
        output.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".medseg-predict-", suffix=".tmp", dir=output))
    except OSError as exc:
        raise MedsegError(f"{output}: cannot create the output folder ({_why(exc)})") from None
    results: list[CaseResult] = []
    try:
        bar = tqdm(cases, desc="predict", unit="case", disable=not progress or None, leave=False)
        for inp in bar:
            bar.set_postfix_str(inp.name, refresh=False)
            try:
                results.append(_predict_one(model, inp, pre, batch_size, staging, output, overlay))
            except OSError as exc:  # e.g. disk full while writing
                raise MedsegError(f"{output}: cannot write the outputs of {inp.source} "
                                  f"({_why(exc)})") from None
        for r in results:  # commit: every case succeeded
            for final in (r.mask, r.overlay):
                if final is not None:
                    os.replace(staging / final.name, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created:
            with contextlib.suppress(OSError):
                output.rmdir()  # only if empty
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return PredictReport(output, results, checkpoint, pre["dataset"], str(dev),
                         time.perf_counter() - t0)


def _predict_one(model: torch.nn.Module, inp: PredictInput, pre: dict, batch_size: int,
                 staging: Path, output: Path, overlay: bool) -> CaseResult:
    t0 = time.perf_counter()
    names = output_names(inp, overlay)
    overlay_path = output / names[1] if overlay else None
    if inp.kind == "ct":
        hu, geometry = _read_ct(inp)
        mask = predict_ct(model, hu, pre, batch_size)
        write_ct_mask(staging / names[0], mask, geometry)
        if overlay:
            write_ct_overlay(staging / names[1], inp.name, hu, mask, pre["window"],
                             tuple(geometry.spacing)[:2])
    else:
        image = _read_frame(inp)
        mask = predict_frame(model, image, pre, batch_size)
        write_frame_mask(staging / names[0], mask)
        if overlay:
            write_frame_overlay(staging / names[1], image, mask)
    return CaseResult(inp.name, inp.source, inp.kind, tuple(int(v) for v in mask.shape),
                      int(np.count_nonzero(mask)), output / names[0], overlay_path,
                      time.perf_counter() - t0)


def format_report(report: PredictReport) -> str:
    """A short table of what was written, for the CLI."""
    lines = []
    width = max([len(c.name) for c in report.cases] + [4])
    unit = "voxels" if report.dataset == "pancreas" else "pixels"
    lines.append(f"{'case':<{width}}  {'size':>14}  {'foreground ' + unit:>18}  files")
    for c in report.cases:
        size = "×".join(str(v) for v in (c.shape[::-1]))  # x × y (× z), as viewers show it
        files = c.mask.name + (f", {c.overlay.name}" if c.overlay else "")
        lines.append(f"{c.name:<{width}}  {size:>14}  {c.foreground:>18}  {files}")
    n = len(report.cases)
    extra = f" and {n} overlay(s)" if any(c.overlay for c in report.cases) else ""
    lines.append(f"wrote {n} mask(s){extra} to {report.output} "
                 f"({report.seconds:.1f} s on {report.device}; checkpoint {report.checkpoint})")
    return "\n".join(lines)
