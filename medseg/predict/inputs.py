"""What to predict: the user's INPUT arguments turned into cases, checked before any is read.

The rules are stated once, in :data:`medseg.commands.predict.INPUT_RULES`. Every
DICOM file's header is read here (without pixels) through the shared series
finder, :func:`medseg.data.dicom.find_series`, which also refuses non-image
objects (SEG, RTSTRUCT, RT Dose, SR, waveforms, …) and truncated files, naming
the file. The modality check compares each DICOM input's Modality with the one
the checkpoint records.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from ..data.dicom import DicomFile, find_series
from ..errors import DataError

NIFTI_SUFFIXES = (".nii.gz", ".nii")
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
#: files that never hold an image: not even opened when a folder is searched
_SKIP_SUFFIXES = (".meta", ".json", ".txt", ".csv", ".md", ".yaml", ".yml", ".xml", ".html",
                  ".pdf", ".zip", ".gz", ".tar", ".npz", ".npy", ".ckpt", ".pt", ".py", ".log")
#: file names skipped when a folder is expanded: BAGLS label masks and predict's own outputs
SKIP_NAME_ENDINGS = ("_seg.png", "_mask.png", "_mask.nii.gz", "_overlay.png", "_prob.nii.gz",
                     "_uncertainty.nii.gz", "_variance.nii.gz", "_seg.dcm")


@dataclass
class PredictInput:
    """One case to predict: a CT volume or a frame."""

    name: str
    path: Path              #: what the reader opens (series folder, file)
    kind: str               #: "ct" | "frame"
    fmt: str                #: "dicom-series" | "dicom-file" | "nifti" | "frame"
    source: Path            #: what the user named (or the folder found for it)
    dicom: list[DicomFile] = field(default_factory=list)  #: headers of a DICOM input's files
    #: fmt "channels" (nnunet checkpoints): the case's channel files in channel order
    channels: tuple[Path, ...] = ()
    ending: str = ""        #: fmt "channels": the files' ending (.nii.gz, .nrrd, .png, …)

    @property
    def files(self) -> list[Path]:
        return [f.path for f in self.dicom]

    @property
    def modality(self) -> str | None:
        """DICOM Modality (``None`` for NIfTI and frames, which do not record one)."""
        if not self.dicom:
            return None
        return str(getattr(self.dicom[0].header, "Modality", "") or "") or ""


def classify(path: Path, volumes: tuple[str, ...] = NIFTI_SUFFIXES) -> str | None:
    """'nifti' | 'frame' | 'dicom' | None (not an image) for one file; ``volumes``: the
    endings read as volume files ('nifti'; nnunet checkpoints add .nrrd, .mha, …)."""
    name = path.name.lower()
    if name.endswith(volumes):
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


def nifti_stem(path: Path) -> str:
    name = path.name
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _file_input(path: Path, kind: str, headers: dict[Path, DicomFile]) -> PredictInput:
    if kind == "nifti":
        return PredictInput(nifti_stem(path), path, "ct", "nifti", path)
    if kind == "frame":
        return PredictInput(path.stem, path, "frame", "frame", path)
    return PredictInput(path.stem, path, "ct", "dicom-file", path, [headers[path]])


def _walk(folder: Path, volumes: tuple[str, ...] = NIFTI_SUFFIXES,
          skip=None) -> dict[Path, list[tuple[Path, str]]]:
    """Each directory below ``folder`` → its image files and their kinds (hidden and skipped
    names out; ``skip(name)``: more names to skip)."""
    files: dict[Path, list[tuple[Path, str]]] = {}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        d = Path(dirpath)
        found = []
        for fn in sorted(filenames):
            if fn.startswith(".") or fn.lower().endswith(SKIP_NAME_ENDINGS) or (skip and skip(fn)):
                continue
            kind = classify(d / fn, volumes)
            if kind is not None:
                found.append((d / fn, kind))
        files[d] = found
    return files


def _headers(paths: Sequence[Path]) -> dict[Path, DicomFile]:
    """Every DICOM file's checked header (read once), by path; DICOMDIR files left out."""
    return {f.path: f for group in find_series(paths).values() for f in group}


def _folder_inputs(folder: Path, volumes: tuple[str, ...] = NIFTI_SUFFIXES,
                   skip=None) -> list[PredictInput]:
    """Expand a folder by :data:`medseg.commands.predict.INPUT_RULES` (one walk, headers read once)."""
    files = _walk(folder, volumes, skip)
    headers = _headers([p for found in files.values() for p, kind in found if kind == "dicom"])
    for d in files:  # DICOMDIR index files are not images: drop them from the listing
        files[d] = [(p, k) for p, k in files[d] if k != "dicom" or p in headers]

    def expand(d: Path) -> list[PredictInput]:
        below = [f for k, v in files.items() if k == d or d in k.parents for f in v]
        if not below:
            return []
        dicoms = [headers[p] for p, kind in below if kind == "dicom"]
        if dicoms and len({f.series_uid for f in dicoms}) == 1 and len(dicoms) == len(below):
            return [_series_input(d, dicoms)]
        loose = [p for p, kind in files.get(d, []) if kind == "dicom"]
        if loose:
            raise DataError(f"{d}: holds DICOM files ({loose[0].name}, ...) next to other series or "
                            "images; give each DICOM series its own folder")
        out = [_file_input(p, kind, headers) for p, kind in files.get(d, [])]
        for sub in sorted(k for k in files if k.parent == d):
            out.extend(expand(sub))
        return out

    inputs = expand(folder)
    if not inputs:
        found = "NIfTI .nii/.nii.gz" if volumes == NIFTI_SUFFIXES else \
            "/".join(v.lstrip(".") for v in volumes) + " volumes"
        raise DataError(f"{folder}: no supported images found (DICOM, {found}, PNG/JPEG)")
    return inputs


def _series_input(folder: Path, dicoms: list[DicomFile]) -> PredictInput:
    sizes = sorted({(int(f.header.Rows), int(f.header.Columns)) for f in dicoms})
    if len(sizes) > 1:
        raise DataError(f"{folder}: the DICOM series mixes slice sizes {sizes}")
    dirs = {f.path.parent for f in dicoms}
    path = dirs.pop() if len(dirs) == 1 else folder
    dicoms = sorted(dicoms, key=lambda f: f.path)
    return PredictInput(folder.resolve().name, path, "ct", "dicom-series", folder, dicoms)


def discover_inputs(paths: Iterable[str | os.PathLike]) -> list[PredictInput]:
    """Turn the user's INPUT arguments into cases (see :data:`medseg.commands.predict.INPUT_RULES`)."""
    inputs: list[PredictInput] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            inputs.extend(_folder_inputs(p))
        elif p.is_file():
            kind = classify(p)
            if kind is None:
                raise DataError(f"{p}: unsupported format (expected a DICOM file or series folder, "
                                "NIfTI .nii/.nii.gz, or a PNG/JPEG frame)")
            headers = _headers([p]) if kind == "dicom" else {}
            if kind == "dicom" and p not in headers:
                raise DataError(f"{p}: a DICOMDIR index file, not an image; give the series folder")
            inputs.append(_file_input(p, kind, headers))
        else:
            raise DataError(f"{p}: no such file or folder")
    if not inputs:
        raise DataError("no inputs given")
    check_names(inputs)
    return inputs


def check_names(inputs: Sequence[PredictInput]) -> None:
    """DataError for an input whose path is not valid UTF-8: ITK aborts the process on such a
    name (and the output names are made from it), so it is refused before anything is read
    or written."""
    from ..data.ct import itk_filename

    for inp in inputs:
        for p in (inp.source, inp.path, *inp.channels, *inp.files):
            itk_filename(p)


# --------------------------------------------------------------------------- checks


def check_inputs(inputs: Sequence[PredictInput], dataset: str, modality: str,
                 checkpoint: Path, *, allow_modality_mismatch: bool = False,
                 channels: Sequence[str] | None = None, trained_ending: str | None = None) -> None:
    """Kind, modality, name and header checks before anything is read in full or written
    (``channels``: an nnunet checkpoint's channel names, checked against each case's files;
    ``trained_ending``: the ending of its training files, where the checkpoint records it)."""
    from .nnunet_inputs import check_case_kind

    for inp in inputs:
        if dataset == "nnunet":
            check_case_kind(inp, list(channels or ()), modality, checkpoint, trained_ending)
        else:
            _check_kind(inp, dataset, modality, checkpoint)
        if not allow_modality_mismatch:
            _check_modality(inp, modality, checkpoint)
    seen: dict[str, Path] = {}
    for inp in inputs:
        if inp.name in seen:
            raise DataError(f"{inp.source}: its output name '{inp.name}' is also the name of "
                            f"{seen[inp.name]}; give inputs distinct names")
        seen[inp.name] = inp.source
    for inp in inputs:
        if inp.fmt == "channels":
            from .nnunet_inputs import check_case_headers

            check_case_headers(inp, list(channels or ()))
        else:
            _check_header(inp)


def _check_kind(inp: PredictInput, dataset: str, modality: str, checkpoint: Path) -> None:
    expected = "ct" if dataset == "pancreas" else "frame"
    if inp.kind == expected:
        return
    what = "a CT volume" if inp.kind == "ct" else "a PNG/JPEG frame"
    if inp.modality:
        what += f" (modality {inp.modality})"
    wants = "CT volumes (DICOM series/file, NIfTI)" if expected == "ct" else "frames (PNG/JPEG)"
    raise DataError(f"{inp.source}: is {what}, but checkpoint {checkpoint} was trained on "
                    f"{dataset} (modality {modality}) and takes {wants}")


def _check_modality(inp: PredictInput, modality: str, checkpoint: Path) -> None:
    """A DICOM input's Modality must be the checkpoint's (NIfTI/PNG record none: not checked)."""
    found = inp.modality
    if found is None or found == modality:
        return
    where = inp.dicom[0].path
    shown = found or "none recorded"
    raise DataError(f"{where}: modality {shown}, but checkpoint {checkpoint} was trained on "
                    f"{modality} images (use --allow-modality-mismatch to predict anyway)")


def _check_header(inp: PredictInput) -> None:
    """Cheap integrity checks: the parts of a file that can be verified without decoding it."""
    if inp.fmt == "nifti":
        _check_nifti_header(inp.path)
    elif inp.fmt == "frame":
        from PIL import Image

        try:
            with Image.open(inp.path) as im:
                im.verify()  # PNG: every chunk's CRC; JPEG: the markers
        except Exception as exc:
            raise DataError(f"{inp.path}: unreadable image ({why(exc)})") from None
    # DICOM: every header was read and checked when the input was found


def image_information(path: Path, what: str = "image"):
    """A SimpleITK reader holding ``path``'s header (no voxels read); a bad or truncated
    header is one DataError naming the file."""
    import SimpleITK as sitk

    from ..data.ct import check_spacing, itk_filename, nifti_header_problem

    reader = sitk.ImageFileReader()
    reader.SetFileName(itk_filename(path))
    problem = nifti_header_problem(path)  # what ITK hides (zero/NaN voxel sizes, no slices, …) or prints
    if problem is not None:
        raise DataError(f"{path}: {problem}")
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise DataError(f"{path}: unreadable {what} file (bad or truncated header)") from None
    check_spacing(path, reader.GetSpacing()[:3])  # a 4th (time) axis is not a voxel size
    return reader


def _check_nifti_header(path: Path) -> None:
    reader = image_information(path, "NIfTI")
    if reader.GetDimension() != 3 and not (reader.GetDimension() == 4 and reader.GetSize()[3] == 1):
        raise DataError(f"{path}: a {reader.GetDimension()}D image; a CT volume must be 3D")
    # the data itself (truncation, NaN) is checked by the reader, medseg.data.ct,
    # when the case is read; outputs are staged, so a late failure leaves nothing


def why(exc: BaseException) -> str:
    """``Type: message`` of an exception, on one short line."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__


__all__ = ["PredictInput", "classify", "discover_inputs", "check_inputs", "nifti_stem", "why"]
