"""One Pancreas-CT case: the CT volume in HU and its label aligned voxel by voxel.

Label volumes of Pancreas-CT (NIH, TCIA) do not always share the array order or
orientation of their DICOM series. The label is therefore matched to the image
in physical space (origin, spacing, direction; see :mod:`medseg.data.geometry`):
if its grid is the image grid up to flips and permutations of the axes — each
label axis is ±1 times an image axis, with equal spacing and size, and the
origins meet the corresponding corner voxel — the label array is flipped and
transposed onto the image grid. Any other difference (shifted origin, other
spacing or size, oblique direction) stops with an error naming the case: a
misaligned pair is never trained on silently.

Label values: 0 background, 1 pancreas, and in the Medical Segmentation
Decathlon (Task07_Pancreas) 2 tumour, merged into pancreas by default
(``merge_tumour=True``); with ``merge_tumour=False`` pancreas (1) and tumour (2) are
two classes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import DataError
from .ct import nifti_nonfinite_count, read_ct_volume, read_sitk_image, sitk_to_volume
from .geometry import Geometry
from .orientation import TRAINING_ORIENTATION, to_training_orientation

#: label values a pancreas label may hold (MSD: 2 = tumour)
LABEL_VALUES = (0, 1, 2)
#: tolerances of the physical-space match
_DIR_ATOL = 1e-3       # direction cosines
_SPACING_RTOL = 1e-3   # relative spacing difference
_ORIGIN_VOXELS = 0.1   # origin offset, in voxels of the image


@dataclass
class PancreasCase:
    """A CT scan and its label on the same grid.

    Attributes:
        case_id: e.g. ``"PANCREAS_0001"`` or ``"pancreas_001"``.
        image: (Z, Y, X) float32 HU.
        label: (Z, Y, X) uint8 aligned to ``image`` ({0, 1}; {0, 1, 2} with tumour kept), or None.
        geometry: the geometry of ``image`` as held (SimpleITK conventions, x, y, z
            order): in :data:`~medseg.data.orientation.TRAINING_ORIENTATION`.
    """

    case_id: str
    image: np.ndarray
    label: np.ndarray | None
    geometry: Geometry

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm, (z, y, x) to match the array axes."""
        sx, sy, sz = self.geometry.spacing
        return (sz, sy, sx)

    def __repr__(self) -> str:  # arrays are large; show their shapes only
        lab = None if self.label is None else f"{self.label.shape} {self.label.dtype}"
        return (f"PancreasCase({self.case_id!r}, image={self.image.shape} {self.image.dtype}, "
                f"label={lab}, spacing={tuple(round(s, 4) for s in self.spacing)})")


def _case_name(image_path: Path) -> str:
    name = image_path.name
    for suffix in (".nii.gz", ".nii", ".mha", ".nrrd", ".dcm"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def match_axes(label: Geometry, image: Geometry) -> tuple[tuple[int, int, int], tuple[bool, bool, bool]] | None:
    """How the label grid maps onto the image grid, or None if it does not.

    Returns ``(perm, flip)``: image axis ``k`` (x, y, z order) is label axis
    ``perm[k]``, traversed backwards when ``flip[k]``.
    """
    dl, di = label.matrix, image.matrix
    perm, flip = [0, 0, 0], [False, False, False]
    used = set()
    for k in range(3):
        hits = [(j, float(np.dot(dl[:, j], di[:, k]))) for j in range(3)]
        j, c = max(hits, key=lambda h: abs(h[1]))
        if j in used or abs(abs(c) - 1.0) > _DIR_ATOL:
            return None
        used.add(j)
        perm[k], flip[k] = j, c < 0
        if label.size[j] != image.size[k]:
            return None
        if abs(label.spacing[j] - image.spacing[k]) > _SPACING_RTOL * image.spacing[k]:
            return None
    # the label's voxel (0, 0, 0) must be the image voxel at the matching corner
    corner = [image.size[k] - 1 if flip[k] else 0 for k in range(3)]
    offset = image.physical_to_index(label.origin) - np.asarray(corner, dtype=np.float64)
    if np.max(np.abs(offset)) > _ORIGIN_VOXELS:
        return None
    return tuple(perm), tuple(flip)


def reorient_to(array: np.ndarray, perm: tuple[int, int, int], flip: tuple[bool, bool, bool]) -> np.ndarray:
    """Put a (z, y, x) label ``array`` on the image grid given :func:`match_axes`' answer."""
    out = array
    # label axis j is NumPy axis 2 - j; image axis k is NumPy axis 2 - k
    for k in range(3):
        if flip[k]:
            out = np.flip(out, axis=2 - perm[k])
    out = np.transpose(out, [2 - perm[2 - a] for a in range(3)])
    return np.ascontiguousarray(out)


def read_label(label_path: str | os.PathLike, image_geometry: Geometry, *, case_id: str,
               values: Iterable[int] = LABEL_VALUES) -> np.ndarray:
    """The label at ``label_path`` on the image grid, with its raw integer values."""
    path = Path(label_path)
    arr, geom = sitk_to_volume(read_sitk_image(path, "label"), path)
    stored_nonfinite = nifti_nonfinite_count(path)  # also catches truncation, which ITK zero-fills
    if arr.dtype.kind == "f":
        bad = max(stored_nonfinite, int(arr.size - np.count_nonzero(np.isfinite(arr))))
        if bad:
            raise DataError(f"{path}: label contains {bad} NaN/infinite voxels")
        if not np.array_equal(arr, np.round(arr)):
            raise DataError(f"{path}: label holds non-integer values")
    found = np.unique(arr)
    allowed = sorted(int(v) for v in values)
    bad = [v for v in found.tolist() if int(v) not in allowed or v != int(v)]
    if bad:
        raise DataError(f"{path}: label values {[int(v) if float(v).is_integer() else v for v in bad]} "
                        f"outside the expected set {allowed}")
    if geom == image_geometry:
        return arr.astype(np.uint8, copy=False)
    match = match_axes(geom, image_geometry)
    if match is None:
        raise DataError(
            f"{path}: label grid of case {case_id} does not match its image and cannot be reoriented "
            f"(label {geom}; image {image_geometry})"
        )
    return reorient_to(arr, *match).astype(np.uint8, copy=False)


def load_pancreas_case(image_path: str | os.PathLike, label_path: str | os.PathLike | None = None, *,
                       merge_tumour: bool = True, case_id: str | None = None,
                       label_values: Iterable[int] = LABEL_VALUES) -> PancreasCase:
    """Read a CT scan and its label, the label aligned to the image.

    Args:
        image_path: a patient folder with a DICOM series anywhere below it, a
            DICOM file, or a NIfTI file.
        label_path: the NIfTI label, or None for an unlabelled scan.
        merge_tumour: map label 2 (MSD tumour) to 1; otherwise keep it: pancreas 1 and
            tumour 2 are two classes.
        case_id: name used in messages and on the case (default: from the path).
        label_values: the raw values the label may hold (default 0, 1, 2).

    The image is brought to the training orientation (:mod:`medseg.data.orientation`:
    axis permutations and flips only; an oblique scan is refused) before the label is
    matched to it, so every case is sliced the same way whatever orientation it is stored in.

    Raises:
        DataError: unreadable files, label values outside ``label_values``, an oblique
            image, or a label grid that differs from the image grid by more than axis
            flips and permutations (the message names the case and the file).
    """
    image_path = Path(image_path)
    case_id = case_id or _case_name(image_path)
    image, native_geometry = read_ct_volume(image_path)
    image, reoriented = to_training_orientation(image, native_geometry, str(image_path),
                                                TRAINING_ORIENTATION)
    geometry = reoriented.target
    label = None
    if label_path is not None:
        raw = read_label(label_path, geometry, case_id=case_id, values=label_values)
        label = (raw >= 1).astype(np.uint8) if merge_tumour else raw.astype(np.uint8)
    return PancreasCase(case_id=case_id, image=image, label=label, geometry=geometry)
