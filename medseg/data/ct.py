"""Reading CT volumes: a DICOM series anywhere below a folder, one DICOM file, or NIfTI.

DICOM (PS3.3 C.7.6.2, Image Plane module):

* the series is found wherever it lies below the given folder (downloads of
  Pancreas-CT nest it as ``<patient>/<study uid>/<series uid>/`` with varying
  depth) by the series finder shared with ``medseg predict``
  (:func:`medseg.data.dicom.find_series_below`, with this reader's rules
  :data:`SERIES_RULES`); several series below one folder are an error — pass the
  series folder;
* slices are ordered by ImagePositionPatient projected on the slice normal
  ``n = row × column`` of ImageOrientationPatient
  (:func:`medseg.data.dicom.order_by_position`, shared with predict; file names
  and InstanceNumber are not trusted);
* HU = stored value · RescaleSlope + RescaleIntercept, per slice;
* refused, naming the file: slices whose ImageOrientationPatient differs, an
  orientation whose row and column cosines are not unit length and orthogonal
  (tolerance :data:`_ORTHO_TOLERANCE`), slices not stacked along the normal
  (gantry tilt: the offset between slice positions leaves the normal by more than
  :data:`_TILT_TOLERANCE_DEG`), and slice gaps that deviate from their mean by more
  than :data:`_SPACING_TOLERANCE` (10 %) — a missing slice — or non-numeric
  position/orientation/spacing/rescale values;
* the geometry is what SimpleITK's ``ImageSeriesReader`` reports for the series
  sorted the same way: origin = position of the first slice, spacing =
  (PixelSpacing[1], PixelSpacing[0], mean slice distance), direction columns =
  (row cosine, column cosine, n).

Headers and native (uncompressed) pixel data are read with pydicom; compressed
transfer syntaxes are decoded by SimpleITK/GDCM. NIfTI and other formats ITK
knows are read with SimpleITK (LPS geometry, NIfTI ``scl_slope``/``scl_inter``
applied by ITK). Problems raise :class:`~medseg.errors.DataError` naming the
file: not a DICOM file among the slices, a truncated file (the one truncation
check, :func:`medseg.data.dicom.truncation`), NaN voxels, …
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import DataError
from .dicom import (DicomFile, find_series, find_series_below, is_compressed, order_by_position,
                    read_dataset, slice_normal, slice_positions, truncation)
from .geometry import Geometry

# ITK prints warnings (e.g. "Non uniform sampling") straight to stderr; our own
# checks report problems as one-line errors instead.
sitk.ProcessObject_SetGlobalWarningDisplay(False)

#: suffixes read with SimpleITK rather than as DICOM
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".mha", ".mhd", ".nrrd", ".nhdr")

#: voxel sizes (mm) a scanner can produce: 0.1 µm to 10 m; beyond is a damaged header
SPACING_RANGE = (1e-4, 1e4)
#: RescaleSlope of a CT slice (HU per stored unit) and the largest |RescaleIntercept| (HU):
#: outside, the HU of the volume are NaN, constant or beyond any tissue
RESCALE_SLOPE_RANGE = (1e-3, 1e3)
RESCALE_INTERCEPT_MAX = 1e5
#: the largest |HU| a CT volume file may hold (air is −1000, dense metal a few 10 000)
HU_MAX = 1e6
#: PhotometricInterpretation of a grayscale CT slice (PALETTE COLOR, RGB, YBR_… are not CT)
GRAYSCALE = ("MONOCHROME1", "MONOCHROME2")

#: a slice's distance to its neighbour may deviate this much (fraction of the mean)
_SPACING_TOLERANCE = 0.1
#: ImageOrientationPatient cosines: |length - 1| and |row · column| up to this
_ORTHO_TOLERANCE = 1e-3
#: slice positions may leave the slice normal by this angle (degrees); more is a gantry tilt
_TILT_TOLERANCE_DEG = 0.5


def _numbers(path: Path, ds, tag: str, count: int, default=None) -> np.ndarray | None:
    """A numeric DICOM attribute (``count`` values) as float64; bad values are a DataError."""
    try:
        with warnings.catch_warnings():  # pydicom warns of an invalid DS ('NaN'); the check below names it
            warnings.simplefilter("ignore")
            value = getattr(ds, tag, None)
    except (TypeError, ValueError):  # pydicom converts DS/IS values on access
        raise DataError(f"{path}: DICOM {tag} is not numeric") from None
    if value is None or value == "":
        return None if default is None else np.asarray(default, dtype=np.float64)
    values = list(value) if count > 1 else [value]
    try:
        out = np.asarray([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{path}: DICOM {tag} is not numeric ({str(value)[:60]!r})") from None
    if out.size != count or not np.all(np.isfinite(out)):
        raise DataError(f"{path}: DICOM {tag} must be {count} finite number(s), got {str(value)[:60]!r}")
    return out


def is_volume_file(path: str | os.PathLike) -> bool:
    """True when ``path`` names a NIfTI/MetaImage/NRRD file (by its suffix)."""
    name = Path(path).name.lower()
    return any(name.endswith(s) for s in VOLUME_SUFFIXES)


def _sitk_message(exc: Exception) -> str:
    """The informative line of a SimpleITK exception (they span several lines)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in lines:
        if "ERROR:" in ln:
            return ln.split("ERROR:", 1)[1].strip()
    return lines[-1] if lines else type(exc).__name__


# ----------------------------------------------------------------------------- sanity
def shown_name(path: str | os.PathLike) -> str:
    """``path`` as text that can always be printed: bytes that are not UTF-8 as ``\\xff``."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


def itk_filename(path: str | os.PathLike) -> str:
    """``path`` as the string handed to ITK; DataError when it is not valid UTF-8.

    ITK cannot open such a name: SimpleITK aborts the whole process (SIGABRT) on the
    surrogate-escaped string Python makes of it, so it is refused before ITK sees it.
    """
    name = str(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise DataError(f"{shown_name(path)}: file name is not valid UTF-8 (the file system's "
                        "encoding); rename the file") from None
    return name


def check_spacing(path: str | os.PathLike, spacing, what: str = "spacing") -> None:
    """DataError unless every voxel size is finite and in :data:`SPACING_RANGE` (mm)."""
    lo, hi = SPACING_RANGE
    values = [float(v) for v in spacing]
    if not all(np.isfinite(v) and lo <= v <= hi for v in values):
        shown = ", ".join(f"{v:g}" for v in values)
        raise DataError(f"{shown_name(path)}: {what} ({shown}) is not a voxel size a scanner "
                        f"produces (each must be a finite number in [{lo:g}, {hi:g}] mm)")


def check_geometry(path: str | os.PathLike, geometry: Geometry) -> None:
    """DataError unless the grid is physical: voxel sizes in range, origin and direction finite."""
    check_spacing(path, geometry.spacing)
    if not (np.all(np.isfinite(geometry.origin)) and np.all(np.isfinite(geometry.direction))):
        raise DataError(f"{shown_name(path)}: origin or direction is not finite")


def _memory_bytes() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 1 << 40


def check_allocation(path: str | os.PathLike, shape, bytes_per_voxel: int = 12) -> None:
    """DataError when an image of ``shape`` voxels cannot be held in memory (checked from the
    header, before anything is allocated). ``bytes_per_voxel``: what reading costs per voxel
    (the decoded buffer plus its float32 copy)."""
    voxels = 1
    for v in shape:
        voxels *= int(v)
    need, have = voxels * bytes_per_voxel, _memory_bytes()
    if need > have:
        dims = "×".join(str(int(v)) for v in shape)
        raise DataError(f"{shown_name(path)}: image size {dims} ({voxels:.3g} voxels) cannot be "
                        f"allocated: reading it needs {need / 2**30:.3g} GiB, this machine has "
                        f"{have / 2**30:.3g} GiB")


#: NIfTI datatype codes of complex and colour voxels (no medseg reader takes them)
_NIFTI_COMPLEX = {32: "complex64", 1792: "complex128", 2048: "complex256"}
_NIFTI_COLOUR = {128: "RGB", 2304: "RGBA"}


def nifti_header_problem(path: str | os.PathLike) -> str | None:
    """What is physically impossible in a NIfTI file's header as stored (None: nothing).

    Read raw, because ITK and nibabel both replace a zero or NaN ``pixdim`` with 1 and
    read a volume whose ``dim`` holds 0 as one slice: a dimension of 0 (no slices), voxel
    sizes that are not finite and positive, a non-finite orientation, complex or colour
    voxels, and an uncompressed file shorter than its voxel data.
    """
    import gzip
    import io

    import nibabel as nib

    name = Path(path).name.lower()
    if not (name.endswith(".nii") or name.endswith(".nii.gz")):
        return None
    try:
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rb") as fh:
            raw = fh.read(540)
        size = int.from_bytes(raw[:4], "little")
        if size not in (348, 540):
            size = int.from_bytes(raw[:4], "big")
        klass = nib.Nifti2Header if size == 540 else nib.Nifti1Header
        header = klass.from_fileobj(io.BytesIO(raw), check=False)
        dim = [int(v) for v in header["dim"]]
        pixdim = [float(v) for v in header["pixdim"]]
        code = int(header["datatype"])
    except Exception:  # noqa: BLE001 - a header ITK accepted but nibabel cannot parse: ITK decides
        return None
    n = dim[0]
    if not 1 <= n <= 7:
        return None  # ITK reports a bad header itself
    sizes = dim[1:n + 1]
    if any(v < 1 for v in sizes):
        what = "no slices" if n >= 3 and sizes[2] < 1 and all(v >= 1 for v in sizes[:2]) else "no voxels"
        return f"the volume has {what} (NIfTI dim {sizes})"
    spatial = pixdim[1:min(n, 3) + 1]
    lo, hi = SPACING_RANGE
    if not all(np.isfinite(v) and lo <= v <= hi for v in spatial):
        return (f"voxel size (NIfTI pixdim {', '.join(f'{v:g}' for v in spatial)}) is not one a scanner "
                f"produces (each must be a finite number in [{lo:g}, {hi:g}] mm)")
    affine = [float(v) for key in ("srow_x", "srow_y", "srow_z") for v in header[key]]
    affine += [float(header[k]) for k in ("quatern_b", "quatern_c", "quatern_d", "qoffset_x", "qoffset_y",
                                          "qoffset_z")]
    if not np.all(np.isfinite(affine)):
        return "the orientation (NIfTI qform/sform) is not finite"
    if code in _NIFTI_COMPLEX:
        return f"complex voxel values ({_NIFTI_COMPLEX[code]}), not an image of real numbers"
    if code in _NIFTI_COLOUR:
        return f"colour voxels ({_NIFTI_COLOUR[code]}), not a grayscale volume"
    if not name.endswith(".gz"):
        voxels = int(np.prod([float(v) for v in sizes]))
        need = int(float(header["vox_offset"])) + voxels * max(int(header["bitpix"]), 1) // 8
        have = Path(path).stat().st_size
        if have < need:
            return f"truncated NIfTI file ({have} bytes, its header promises {need})"
    return None


# ----------------------------------------------------------------------------- files
def read_sitk_image(path: str | os.PathLike, what: str = "image") -> sitk.Image:
    """``sitk.ReadImage`` with one-line errors naming the file, after the header's checks:
    a name ITK can take (:func:`itk_filename`), a physically possible NIfTI header
    (:func:`nifti_header_problem`), voxel sizes in :data:`SPACING_RANGE` and an image
    size that can be allocated (:func:`check_allocation`) — all before the voxels are read."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{shown_name(p)}: {what} file not found")
    if not p.is_file():
        raise DataError(f"{shown_name(p)}: not a file")
    reader = sitk.ImageFileReader()
    reader.SetFileName(itk_filename(p))
    problem = nifti_header_problem(p)  # first: ITK's NIfTI library prints its own complaints
    if problem is not None:
        raise DataError(f"{p}: {problem}")
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise DataError(f"{p}: unreadable or truncated {what} file ({_sitk_message(exc)})") from None
    check_allocation(p, (*reader.GetSize(), reader.GetNumberOfComponents()))
    check_spacing(p, reader.GetSpacing()[:3])  # a 4th (time) axis is not a voxel size
    try:
        return reader.Execute()
    except RuntimeError as exc:
        raise DataError(f"{p}: unreadable or truncated {what} file ({_sitk_message(exc)})") from None


def sitk_to_volume(img: sitk.Image, path: str | os.PathLike) -> tuple[np.ndarray, Geometry]:
    """(Z, Y, X) array and geometry of a 2D/3D (or 4D with one time point) image."""
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise DataError(f"{path}: expected a scalar volume, found "
                        f"{img.GetNumberOfComponentsPerPixel()} components per voxel")
    if img.GetDimension() == 4:
        if img.GetSize()[3] != 1:
            raise DataError(f"{path}: expected a 3D volume, found 4D with {img.GetSize()[3]} time points")
        img = img[:, :, :, 0]
    if img.GetDimension() not in (2, 3):
        raise DataError(f"{path}: expected a 3D volume, found {img.GetDimension()}D")
    arr = sitk.GetArrayFromImage(img)
    if arr.ndim == 2:
        arr = arr[None]
    return arr, Geometry.from_sitk(img)


def nifti_nonfinite_count(path: str | os.PathLike) -> int:
    """NaN/inf voxels stored in a NIfTI file (0 for other files); truncation is a DataError.

    ITK's NIfTI reader silently turns NaN into 0 and zero-fills truncated data, so
    the stored values are read again with nibabel; integer files cannot hold NaN.
    """
    name = Path(path).name.lower()
    if not (name.endswith(".nii") or name.endswith(".nii.gz")):
        return 0
    import nibabel as nib

    try:
        # read the data of every NIfTI, not only float ones: ITK also zero-fills the
        # missing voxels of a truncated file without an error, nibabel raises
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # noqa: BLE001 - SimpleITK read it; report nibabel's view
        raise DataError(f"{path}: unreadable or truncated NIfTI file ({type(exc).__name__})") from None
    if data.dtype.kind not in "fc":
        return 0
    return int(data.size - np.count_nonzero(np.isfinite(data)))


def read_volume_file(path: str | os.PathLike) -> tuple[np.ndarray, Geometry]:
    """A NIfTI (or other ITK) CT volume as float32 (Z, Y, X) and its geometry."""
    arr, geom = sitk_to_volume(read_sitk_image(path, "volume"), path)
    check_geometry(path, geom)
    arr = arr.astype(np.float32, copy=False)
    bad = max(nifti_nonfinite_count(path), int(arr.size - np.count_nonzero(np.isfinite(arr))))
    if bad:
        raise DataError(f"{path}: volume contains {bad} NaN/infinite voxels")
    if arr.size and float(np.abs(arr).max()) > HU_MAX:
        raise DataError(f"{path}: voxel values reach {float(np.abs(arr).max()):.3g}, beyond any CT "
                        f"scanner's (±{HU_MAX:g} HU); check the file's intensity scaling (scl_slope)")
    return arr, geom


# ----------------------------------------------------------------------------- DICOM
@dataclass
class _Slice:
    path: Path
    ds: object  # pydicom Dataset


#: the dataset reader's rules for :func:`~medseg.data.dicom.find_series` (``medseg
#: predict`` keeps the defaults): a download's other folders may hold anything, but a
#: stray file among the slices is an error; reports and structure sets beside the
#: slices are skipped; slices without a SeriesInstanceUID are grouped together
SERIES_RULES = {"not_dicom": "error-beside-images", "non_images": "skip-imageless",
                "require_series_uid": False}


def _check_slice(path: Path, ds) -> None:
    """Raise DataError unless ``ds`` (read with its pixels) is a complete single-frame slice.

    The finder has checked its SOP Class, Rows/Columns and file size already; here
    the pixel data itself is checked by the same truncation rule.
    """
    for tag in ("BitsAllocated", "PixelRepresentation"):
        if tag not in ds:
            raise DataError(f"{path}: truncated or incomplete DICOM file (no {tag})")
    if "PixelData" not in ds:
        raise DataError(f"{path}: truncated or incomplete DICOM file (no pixel data)")
    if int(getattr(ds, "NumberOfFrames", 1) or 1) != 1:
        raise DataError(f"{path}: multi-frame DICOM files are not supported in a series")
    if int(getattr(ds, "SamplesPerPixel", 1) or 1) != 1:
        raise DataError(f"{path}: not a grayscale CT slice (SamplesPerPixel={ds.SamplesPerPixel})")
    photometric = str(getattr(ds, "PhotometricInterpretation", "") or "").strip().upper()
    if photometric and photometric not in GRAYSCALE:
        raise DataError(f"{path}: DICOM PhotometricInterpretation is {photometric}: "
                        f"{'palette (colour lookup) indices' if photometric.startswith('PALETTE') else 'colour'} "
                        "pixel data, not a grayscale CT slice")
    problem = truncation(path, ds)  # the one truncation check, shared with medseg predict
    if problem:
        raise DataError(f"{path}: {problem}")
    _check_voxel_sizes(path, ds)
    _rescale(path, ds)


def _check_voxel_sizes(path: Path, ds) -> None:
    """PixelSpacing, SliceThickness and SpacingBetweenSlices, where present: finite sizes in
    :data:`SPACING_RANGE` (0, negative or absurd values are a damaged header)."""
    for tag, count in (("PixelSpacing", 2), ("SliceThickness", 1), ("SpacingBetweenSlices", 1)):
        values = _numbers(path, ds, tag, count)
        if values is not None:
            check_spacing(path, values, f"DICOM {tag}")


def _is_ct(ds) -> bool:
    """Whether a slice is CT by its Modality (a slice that records none is taken as CT)."""
    return str(getattr(ds, "Modality", "") or "CT").strip().upper() == "CT"


def _rescale(path: Path, ds) -> tuple[float, float]:
    """(RescaleSlope, RescaleIntercept) of a slice (defaults 1, 0); DataError for values no
    scanner writes: a slope of 0 (every voxel the same value) and, for CT, a negative or
    absurd slope (outside :data:`RESCALE_SLOPE_RANGE`) or intercept (beyond
    ±:data:`RESCALE_INTERCEPT_MAX`). Other modalities (an MR series given to an nnunet
    checkpoint) scale more freely: only |slope| in [1e-9, 1e9] and |intercept| ≤ 1e9."""
    slope = float(_numbers(path, ds, "RescaleSlope", 1, [1.0])[0])
    intercept = float(_numbers(path, ds, "RescaleIntercept", 1, [0.0])[0])
    if slope == 0:
        raise DataError(f"{path}: DICOM RescaleSlope is 0: every voxel would have the same value")
    if _is_ct(ds):  # HU per stored unit: positive, within a CT scanner's range
        (lo, hi), most, whose, value = RESCALE_SLOPE_RANGE, RESCALE_INTERCEPT_MAX, "a CT scanner's", slope
    else:
        (lo, hi), most, whose, value = (1e-9, 1e9), 1e9, "a scanner's", abs(slope)
    if not lo <= value <= hi:
        raise DataError(f"{path}: DICOM RescaleSlope is {slope:g}, not {whose} (in [{lo:g}, {hi:g}])")
    if abs(intercept) > most:
        raise DataError(f"{path}: DICOM RescaleIntercept is {intercept:g}, not {whose} (within ±{most:g})")
    return slope, intercept
    if not lo <= slope <= hi:
        raise DataError(f"{path}: DICOM RescaleSlope is {slope:g}, not {unit}, in [{lo:g}, {hi:g}])")
    if abs(intercept) > most:
        raise DataError(f"{path}: DICOM RescaleIntercept is {intercept:g}, not {unit.split(' (')[0]} "
                        f"(within ±{most:g})")
    return slope, intercept


def _slice_pixels(path: Path, ds) -> np.ndarray:
    """HU of one slice, (Y, X) float32: stored · RescaleSlope + RescaleIntercept."""
    if is_compressed(ds):
        try:  # GDCM decodes JPEG/JPEG-LS/RLE/J2K; it applies the rescale itself
            img = sitk.ReadImage(itk_filename(path))
        except RuntimeError as exc:
            raise DataError(f"{path}: cannot decode compressed DICOM ({_sitk_message(exc)})") from None
        return sitk.GetArrayFromImage(img).reshape(int(ds.Rows), int(ds.Columns)).astype(np.float32)
    try:
        stored = ds.pixel_array
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"{path}: unreadable pixel data ({str(exc).splitlines()[0][:120]})") from None
    slope, intercept = _rescale(path, ds)
    out = stored.astype(np.float32)
    if slope != 1.0:
        out *= np.float32(slope)
    if intercept != 0.0:
        out += np.float32(intercept)
    return out


def _orientation(path: Path, ds) -> np.ndarray:
    iop = getattr(ds, "ImageOrientationPatient", None)
    if iop is None or (hasattr(iop, "__len__") and len(iop) == 0):
        return np.array([1.0, 0, 0, 0, 1.0, 0])  # ITK's default for a missing IOP
    out = _numbers(path, ds, "ImageOrientationPatient", 6)
    row, col = out[:3], out[3:]
    if (abs(np.linalg.norm(row) - 1) > _ORTHO_TOLERANCE or abs(np.linalg.norm(col) - 1) > _ORTHO_TOLERANCE
            or abs(float(np.dot(row, col))) > _ORTHO_TOLERANCE):
        raise DataError(f"{path}: ImageOrientationPatient is not two orthogonal unit vectors "
                        f"({', '.join(f'{v:.4g}' for v in out)})")
    return out


def _check_stacking(slices: list, positions: np.ndarray, normal: np.ndarray) -> None:
    """Refuse slices whose positions do not move along the slice normal (gantry tilt)."""
    first = _numbers(slices[0].path, slices[0].ds, "ImagePositionPatient", 3)
    last = _numbers(slices[-1].path, slices[-1].ds, "ImagePositionPatient", 3)
    step = last - first
    length = float(np.linalg.norm(step))
    if length == 0:
        return
    angle = float(np.degrees(np.arccos(min(1.0, abs(float(np.dot(step, normal))) / length))))
    if angle > _TILT_TOLERANCE_DEG:
        tilt = getattr(slices[-1].ds, "GantryDetectorTilt", None)
        note = f", GantryDetectorTilt {tilt}" if tilt not in (None, "") else ""
        raise DataError(f"{slices[-1].path}: slices are not stacked along the slice normal (tilted "
                        f"by {angle:.2f}° from {slices[0].path.name}{note}); gantry-tilted or sheared "
                        f"series are not supported — resample it to an orthogonal grid first")


def _geometry(slices: list[_Slice], normal: np.ndarray, iop: np.ndarray,
              positions: np.ndarray) -> Geometry:
    first = slices[0].ds
    row_spacing, col_spacing = _numbers(slices[0].path, first, "PixelSpacing", 2, [1.0, 1.0])
    if len(slices) > 1:
        z = float((positions[-1] - positions[0]) / (len(slices) - 1))
    else:
        z = float(getattr(first, "SpacingBetweenSlices", 0) or getattr(first, "SliceThickness", 0) or 1.0)
    ipp = getattr(first, "ImagePositionPatient", None)
    origin = tuple(float(v) for v in _numbers(slices[0].path, first, "ImagePositionPatient", 3)) \
        if ipp is not None else (0.0, 0.0, 0.0)
    row, col = iop[:3], iop[3:]
    d = np.stack([row, col, normal], axis=1)  # columns: x, y, z axis directions
    return Geometry(origin, (col_spacing, row_spacing, z), tuple(d.ravel()),
                    (int(first.Columns), int(first.Rows), len(slices)))


def find_dicom_files(folder: str | os.PathLike) -> list[DicomFile]:
    """Every DICOM image slice below ``folder``, its header read without pixels.

    The shared finder (:func:`medseg.data.dicom.find_series_below`) with
    :data:`SERIES_RULES`: a non-DICOM file in a folder that holds slices is an
    error naming that file; folders without any DICOM file are ignored, as are
    hidden files and non-image DICOM objects (DICOMDIR, reports, RT structures).
    """
    series = find_series_below(folder, **SERIES_RULES)
    return [f for group in series.values() for f in group]


def read_dicom_series(folder: str | os.PathLike) -> tuple[np.ndarray, Geometry]:
    """The one DICOM series below ``folder`` as float32 HU (Z, Y, X) and its geometry."""
    root = Path(folder)
    if not root.exists():
        raise DataError(f"{root}: folder not found")
    series = find_series_below(root, **SERIES_RULES)
    if not series:
        raise DataError(f"{root}: empty folder (no DICOM files below it)")
    if len(series) > 1:
        raise DataError(f"{root}: {len(series)} DICOM series found below this folder; "
                        f"pass the folder of the one to read")
    return _assemble([_read_slice(f) for f in next(iter(series.values()))])


def read_dicom_file(path: str | os.PathLike) -> tuple[np.ndarray, Geometry]:
    """One DICOM slice as a one-slice volume (named by the user: it must be an image)."""
    p = Path(path)
    found = find_series([p], require_series_uid=False)
    if not found:
        raise DataError(f"{p}: a DICOMDIR index file, not an image; give the series folder")
    return _assemble([_read_slice(next(iter(found.values()))[0])])


def _read_slice(found: DicomFile) -> _Slice:
    """The found slice read again with its pixels, and checked."""
    ds = read_dataset(found.path)
    if ds is None:  # replaced since it was found
        raise DataError(f"{found.path}: not a DICOM file")
    _check_slice(found.path, ds)
    return _Slice(found.path, ds)


def _assemble(slices: list[_Slice]) -> tuple[np.ndarray, Geometry]:
    """Checked slices stacked along the slice normal (the shared order) into HU and geometry."""
    iop = _check_alike(slices)
    if len(slices) > 1:
        for s in slices:  # numeric (or an error naming the file) before the shared order reads them
            if _numbers(s.path, s.ds, "ImagePositionPatient", 3) is None:
                raise DataError(f"{s.path}: DICOM slice has no ImagePositionPatient; cannot order slices")
    slices = [slices[i] for i in order_by_position([s.ds for s in slices])]
    positions = slice_positions([s.ds for s in slices]) if len(slices) > 1 else np.zeros(1)
    normal = slice_normal(slices[0].ds)  # the normal the shared order projected on
    if len(slices) > 1:
        _check_spacing(slices, positions, normal)
    first = slices[0].ds
    geometry = _geometry(slices, normal, iop, positions)
    check_geometry(slices[-1].path if len(slices) > 1 else slices[0].path, geometry)
    check_allocation(slices[0].path.parent, (len(slices), int(first.Rows), int(first.Columns)), 4)
    volume = np.empty((len(slices), int(first.Rows), int(first.Columns)), dtype=np.float32)
    for k, s in enumerate(slices):
        volume[k] = _slice_pixels(s.path, s.ds)
    bad = int(volume.size - np.count_nonzero(np.isfinite(volume)))
    if bad:  # e.g. float pixel data holding NaN
        raise DataError(f"{slices[0].path.parent}: the series holds {bad} NaN/infinite voxels")
    if _is_ct(first) and volume.size and float(np.abs(volume).max()) > HU_MAX:
        raise DataError(f"{slices[0].path.parent}: HU values reach {float(np.abs(volume).max()):.3g}, beyond "
                        f"any CT scanner's (±{HU_MAX:g}); check RescaleSlope/RescaleIntercept")
    return volume, geometry


def _check_alike(slices: list[_Slice]) -> np.ndarray:
    """The series' ImageOrientationPatient; DataError for a slice of another size or orientation."""
    iop = _orientation(slices[0].path, slices[0].ds)
    rows, cols = int(slices[0].ds.Rows), int(slices[0].ds.Columns)
    for s in slices[1:]:
        if (int(s.ds.Rows), int(s.ds.Columns)) != (rows, cols):
            raise DataError(f"{s.path}: slice is {s.ds.Rows}×{s.ds.Columns} pixels, the series "
                            f"is {rows}×{cols}")
        if not np.allclose(_orientation(s.path, s.ds), iop, atol=1e-3):
            raise DataError(f"{s.path}: ImageOrientationPatient differs from the rest of the series")
    return iop


def _check_spacing(slices: list[_Slice], positions: np.ndarray, normal: np.ndarray) -> None:
    """Ordered slices: no two at one position, stacked along the normal, evenly spaced."""
    gaps = np.diff(positions)
    dup = np.flatnonzero(gaps < 1e-4)
    if dup.size:
        raise DataError(f"{slices[dup[0] + 1].path}: two slices at the same position as "
                        f"{slices[dup[0]].path.name}")
    _check_stacking(slices, positions, normal)
    mean = (positions[-1] - positions[0]) / (len(slices) - 1)
    worst = int(np.argmax(np.abs(gaps - mean)))
    if abs(gaps[worst] - mean) > _SPACING_TOLERANCE * mean:
        raise DataError(f"{slices[worst + 1].path}: slice spacing is not uniform (gap of "
                        f"{gaps[worst]:.3g} mm after {slices[worst].path.name}, mean {mean:.3g} mm, "
                        f"tolerance {_SPACING_TOLERANCE:.0%}); a slice may be missing")


def read_ct_volume(path: str | os.PathLike) -> tuple[np.ndarray, Geometry]:
    """A CT volume as float32 HU (Z, Y, X) and its geometry.

    ``path`` is a folder with a DICOM series anywhere below it, a single DICOM
    file (a one-slice volume), or a NIfTI/ITK volume file.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: image not found")
    if p.is_dir():
        return read_dicom_series(p)
    if is_volume_file(p):
        return read_volume_file(p)
    return read_dicom_file(p)
