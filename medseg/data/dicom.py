"""DICOM facts shared by the CT reader (:mod:`medseg.data.ct`) and ``medseg predict``.

* :func:`non_image_class` — the name of a file's SOP Class when it is not an
  image (Segmentation, RT Structure Set, RT Dose, Structured Report, waveform,
  presentation state, encapsulated document, …), else ``None``;
* :func:`truncation` — the one truncation check: whether a file holds all the
  pixel bytes its header promises (native transfer syntaxes; compressed ones
  are checked by their decoder);
* :func:`read_header` / :func:`find_series` — the one DICOM series finder: DICOM
  files read without their pixels, checked, and grouped by SeriesInstanceUID;
  :func:`find_series_below` walks a folder for it. Its keyword arguments hold the
  two callers' different rules (see :func:`find_series`);
* :func:`slice_positions` / :func:`order_by_position` — slices ordered along the
  slice normal, the rule :func:`medseg.data.ct.read_dicom_series` stacks a volume by
  and ``medseg predict`` orders the source files of a DICOM SEG by.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import DataError

#: SOP Class UID prefixes of objects that are not images (PS3.4 Annex B, PS3.6 Annex A)
NON_IMAGE_SOP_PREFIXES = (
    "1.2.840.10008.1.3.10",          # Media Storage Directory (DICOMDIR)
    "1.2.840.10008.5.1.4.1.1.9.",    # waveforms (ECG, audio, …)
    "1.2.840.10008.5.1.4.1.1.11.",   # presentation states
    "1.2.840.10008.5.1.4.1.1.66",    # raw data, registrations, fiducials, segmentations
    "1.2.840.10008.5.1.4.1.1.67",    # real world value mapping
    "1.2.840.10008.5.1.4.1.1.68.",   # surface scans
    "1.2.840.10008.5.1.4.1.1.88.",   # structured reports
    "1.2.840.10008.5.1.4.1.1.90.",   # content assessment results
    "1.2.840.10008.5.1.4.1.1.91.",   # microscopy annotations
    "1.2.840.10008.5.1.4.1.1.104.",  # encapsulated PDF/CDA/STL
    "1.2.840.10008.5.1.4.1.1.481.",  # RT objects (structure sets, dose, plans, …)
    "1.2.840.10008.5.1.4.34.",       # RT second generation
)
#: RT Image is an image (a projection radiograph) despite its RT prefix
_IMAGE_EXCEPTIONS = ("1.2.840.10008.5.1.4.1.1.481.1",)
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"

#: uncompressed transfer syntaxes (pixel data stored as Rows·Columns·Samples·Bits/8 bytes per frame)
NATIVE_TRANSFER_SYNTAXES = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}

#: the attributes :func:`read_header` reads (everything the finder and the checks use)
HEADER_TAGS = ["SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "Modality", "Rows",
               "Columns", "BitsAllocated", "SamplesPerPixel", "NumberOfFrames",
               "ImagePositionPatient", "ImageOrientationPatient"]


def sop_class_uid(ds: Any) -> str:
    """The SOP Class UID of a dataset (SOPClassUID, else the file meta's media storage class)."""
    uid = str(getattr(ds, "SOPClassUID", "") or "")
    if not uid and getattr(ds, "file_meta", None) is not None:
        uid = str(ds.file_meta.get("MediaStorageSOPClassUID", "") or "")
    return uid


def sop_class_name(uid: str) -> str:
    """``"Segmentation Storage (1.2.840.10008.5.1.4.1.1.66.4)"``, or the UID alone if unknown."""
    from pydicom.uid import UID

    name = UID(uid).name
    return uid if not name or name == uid else f"{name} ({uid})"


def non_image_class(ds: Any) -> str | None:
    """The SOP Class (name and UID) of a non-image object; ``None`` for an image."""
    uid = sop_class_uid(ds)
    if uid and uid.startswith(NON_IMAGE_SOP_PREFIXES) and not uid.startswith(_IMAGE_EXCEPTIONS):
        return sop_class_name(uid)
    return None


def transfer_syntax(ds: Any) -> str:
    """The TransferSyntaxUID of a dataset's file meta ('' when it has none)."""
    meta = getattr(ds, "file_meta", None)
    return "" if meta is None else str(meta.get("TransferSyntaxUID", "") or "")


def is_compressed(ds: Any) -> bool:
    """True when the pixel data is encapsulated (JPEG, JPEG-LS, JPEG 2000, RLE, …)."""
    from pydicom.uid import UID

    ts = UID(transfer_syntax(ds))
    return bool(ts.is_transfer_syntax and ts.is_compressed)


def expected_pixel_bytes(ds: Any) -> int | None:
    """Bytes of native pixel data the header promises; ``None`` for compressed syntaxes."""
    ts = transfer_syntax(ds)
    if ts and ts not in NATIVE_TRANSFER_SYNTAXES:
        return None
    bits = int(getattr(ds, "BitsAllocated", 16) or 16)
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    return (int(ds.Rows) * int(ds.Columns) * samples * frames * bits + 7) // 8


def truncation(path: str | os.PathLike, ds: Any) -> str | None:
    """Why ``path`` is truncated (one phrase), or ``None`` when its pixel data is complete.

    With the pixels read (``PixelData`` in ``ds``) their length is compared with what
    Rows × Columns × SamplesPerPixel × BitsAllocated × NumberOfFrames promises; with a
    header read without pixels, the file's size (which must hold at least the pixels).
    """
    need = expected_pixel_bytes(ds) if "Rows" in ds and "Columns" in ds else None
    if need is None:
        return None
    if "PixelData" in ds:
        got, what = len(ds.PixelData), "pixel data has"
    else:
        got, what = Path(path).stat().st_size, "file has"
    if got < need:
        return f"truncated DICOM file ({what} {got} bytes, its pixel data alone needs {need})"
    return None


def read_dataset(path: str | os.PathLike, *, pixels: bool = True) -> Any | None:
    """A DICOM file read with pydicom; ``None`` if it is not DICOM at all.

    ``pixels=False`` reads only the header attributes :data:`HEADER_TAGS` (what the
    finder and the checks use). A damaged file is a DataError naming it.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    header_only = {} if pixels else {"stop_before_pixels": True, "specific_tags": HEADER_TAGS}
    try:
        return pydicom.dcmread(str(path), **header_only)
    except InvalidDicomError:
        return None
    except Exception as exc:  # noqa: BLE001 - any parser failure is a damaged file
        raise DataError(f"{path}: unreadable or truncated DICOM file ({type(exc).__name__})") from None


def read_header(path: str | os.PathLike) -> Any | None:
    """The header of a DICOM file, without pixels; ``None`` if the file is not DICOM at all."""
    return read_dataset(path, pixels=False)


#: what :func:`find_series` may do with a file that is not DICOM, and with a non-image object
NOT_DICOM_RULES = ("error", "skip", "error-beside-images")
NON_IMAGE_RULES = ("error", "skip-imageless")


@dataclass
class DicomFile:
    """One DICOM file found below a folder: its path and header (no pixels)."""

    path: Path
    header: Any

    @property
    def series_uid(self) -> str:
        return str(getattr(self.header, "SeriesInstanceUID", "") or "")


def find_series(files: Sequence[Path], *, not_dicom: str = "error", non_images: str = "error",
                require_series_uid: bool = True) -> dict[str, list[DicomFile]]:
    """Headers of the DICOM ``files`` grouped by SeriesInstanceUID, in the order given.

    Every image's header is checked (:func:`check_image_header`: an image SOP
    Class, pixel dimensions, not truncated) and a problem is a DataError naming
    the file. DICOMDIR index files are skipped. The two callers differ:

    * ``not_dicom`` — a file that is not DICOM at all: ``"error"`` (``medseg
      predict``: the user named it, or its suffix or preamble said DICOM),
      ``"skip"``, or ``"error-beside-images"`` (:mod:`medseg.data.ct`: a stray file
      in a folder that holds slices means a damaged or mixed-up copy of the
      series, while the other folders of a download may hold anything);
    * ``non_images`` — an object that is not an image: ``"error"`` (predict: the
      user asked for a mask of it), or ``"skip-imageless"`` (data: reports,
      structure sets, waveforms, … may sit beside the slices of a download; one
      that carries pixels — SEG, RT Dose — is still refused, as it would
      otherwise be taken for a slice);
    * ``require_series_uid`` — predict needs the UID to reference the source
      series in its DICOM SEG; the dataset reader groups files without one together.
    """
    if not_dicom not in NOT_DICOM_RULES or non_images not in NON_IMAGE_RULES:
        raise ValueError(f"find_series: unknown rule not_dicom={not_dicom!r} non_images={non_images!r}")
    series: dict[str, list[DicomFile]] = {}
    strays: list[Path] = []
    for p in map(Path, files):
        ds = read_header(p)
        if ds is None:
            if not_dicom == "error":
                raise DataError(f"{p}: not a DICOM file")
            strays.append(p)
        elif sop_class_uid(ds) == MEDIA_STORAGE_DIRECTORY or _skipped(ds, non_images):
            continue
        else:
            check_image_header(p, ds)
            f = DicomFile(p, ds)
            if require_series_uid and not f.series_uid:
                raise DataError(f"{p}: DICOM file without a SeriesInstanceUID")
            series.setdefault(f.series_uid, []).append(f)
    if not_dicom == "error-beside-images":
        _refuse_strays_beside_images(strays, series)
    return series


def _skipped(ds: Any, non_images: str) -> bool:
    """Whether a non-image object without pixel dimensions is skipped under ``non_images``."""
    imageless = "Rows" not in ds or "Columns" not in ds
    return non_images == "skip-imageless" and imageless and non_image_class(ds) is not None


def _refuse_strays_beside_images(strays: Sequence[Path], series: dict[str, list[DicomFile]]) -> None:
    """DataError naming the first non-DICOM file that sits in a folder holding image slices."""
    folders = {f.path.parent for group in series.values() for f in group}
    for p in strays:
        if p.parent in folders:
            raise DataError(f"{p}: not a DICOM file (found among the slices in {p.parent})")


def find_series_below(folder: str | os.PathLike, **rules: Any) -> dict[str, list[DicomFile]]:
    """:func:`find_series` over every file below ``folder`` (hidden files and folders left out).

    Files are taken folder by folder in sorted order (symbolic links to folders
    are not followed); ``rules`` are :func:`find_series`'s keyword arguments.
    """
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files.extend(Path(dirpath) / f for f in sorted(filenames) if not f.startswith("."))
    return find_series(files, **rules)


def check_image_header(path: str | os.PathLike, ds: Any) -> None:
    """DataError unless ``ds`` (a header) is a complete image: SOP Class, dimensions, size."""
    cls = non_image_class(ds)
    if cls is not None:
        raise DataError(f"{path}: not an image but a {cls} object")
    if "Rows" not in ds or "Columns" not in ds:
        raise DataError(f"{path}: truncated or incomplete DICOM file (no Rows/Columns)")
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        value = getattr(ds, "NumberOfFrames", None)
        frames = 1 if value is None or str(value).strip() == "" else int(value)
    except (TypeError, ValueError):
        raise DataError(f"{path}: DICOM Rows/Columns/NumberOfFrames are not numbers") from None
    if rows < 1 or cols < 1:
        raise DataError(f"{path}: the image has no pixels (DICOM Rows × Columns = {rows} × {cols})")
    if frames < 1:
        raise DataError(f"{path}: the image has no frames (DICOM NumberOfFrames = {frames})")
    problem = truncation(path, ds)
    if problem:
        raise DataError(f"{path}: {problem}")


def slice_normal(ds: Any) -> np.ndarray:
    """row × column direction cosines of ImageOrientationPatient (ITK's default when absent)."""
    iop = getattr(ds, "ImageOrientationPatient", None)
    iop = [float(v) for v in iop] if iop is not None and len(iop) == 6 else [1.0, 0, 0, 0, 1.0, 0]
    return np.cross(iop[:3], iop[3:])


def slice_positions(headers: Sequence[Any]) -> np.ndarray:
    """Each slice's ImagePositionPatient projected on the first slice's normal (mm)."""
    normal = slice_normal(headers[0])
    return np.array([float(np.dot([float(v) for v in h.ImagePositionPatient], normal)) for h in headers])


def order_by_position(headers: Sequence[Any]) -> list[int]:
    """Indices of ``headers`` sorted by ImagePositionPatient along the slice normal (stable).

    File names and InstanceNumber are not trusted. The positions must be numeric
    (:mod:`medseg.data.ct` checks them first, naming the file).
    """
    if len(headers) < 2:
        return list(range(len(headers)))
    return [int(i) for i in np.argsort(slice_positions(headers), kind="stable")]
