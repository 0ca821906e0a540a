"""One orientation for every volume: what training slices and what ``medseg predict`` sees.

A network trained on 2D slices learns the anatomy in one array orientation. The same
scan stored as NIfTI in RAS (what many converters write: ``nibabel.as_closest_canonical``)
instead of LPS (what a DICOM series reads as) has its x and y array axes reversed; fed
as it is, a network trained on LPS arrays sees a mirrored body and may find nothing.
So every 3D volume — training case or new scan, DICOM, NIfTI, NRRD, MHA — is brought to
one orientation before slicing, and predictions are brought back to the input's own
array order and geometry before they are written.

Orientation codes follow ITK / SimpleITK's ``DICOMOrient`` (and 3D Slicer's "LPS"):
one letter per array axis in (x, y, z) index order, naming the patient direction in
which the index *increases*: ``L``/``R`` (physical +x / −x in LPS coordinates),
``P``/``A`` (+y / −y), ``S``/``I`` (+z / −z). ``"LPS"`` is the identity direction, the
orientation of an axial DICOM series; it is medseg's training orientation
(:data:`TRAINING_ORIENTATION`), recorded in every checkpoint.

Reorienting only permutes and reverses array axes (no resampling, no interpolation),
so it is exact and invertible. Each array axis goes to the patient axis its direction
cosine is closest to; a direction that is further than :data:`OBLIQUE_TOLERANCE_DEG`
from every patient axis (an oblique acquisition) is **refused** with one line naming
the file — slicing it along array axes would show the network anatomy at angles it
never saw, and resampling would change the input's voxels. Within the tolerance the
physical geometry is kept exactly (the small obliquity travels in the direction matrix).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import DataError
from .geometry import Geometry

#: the orientation medseg trains in (and records in checkpoints)
TRAINING_ORIENTATION = "LPS"
#: an array axis may leave its patient axis by this angle (degrees); more is refused
OBLIQUE_TOLERANCE_DEG = 1.0

#: letter → (physical LPS axis, sign)
_LETTERS = {"L": (0, 1), "R": (0, -1), "P": (1, 1), "A": (1, -1), "S": (2, 1), "I": (2, -1)}


def check_code(code: str) -> str:
    """``code`` upper-cased if it is a valid orientation code (one of L/R, P/A, S/I each)."""
    c = str(code).upper()
    if len(c) != 3 or any(ch not in _LETTERS for ch in c) or len({_LETTERS[ch][0] for ch in c}) != 3:
        raise ValueError(f"orientation {code!r} is not a code like LPS or RAS "
                         "(one of L/R, one of P/A, one of S/I)")
    return c


def _axes(geometry: Geometry, what: str) -> list[tuple[int, int]]:
    """(physical axis, sign) of each array axis x, y, z; DataError when oblique."""
    d = geometry.matrix
    out = []
    for k in range(3):
        col = d[:, k] / max(np.linalg.norm(d[:, k]), 1e-12)
        axis = int(np.argmax(np.abs(col)))
        angle = math.degrees(math.acos(min(1.0, abs(float(col[axis])))))
        if angle > OBLIQUE_TOLERANCE_DEG:
            raise DataError(f"{what}: oblique orientation (array axis {'xyz'[k]} is {angle:.1f}° from "
                            f"the nearest patient axis; at most {OBLIQUE_TOLERANCE_DEG:g}° is accepted) — "
                            "resample it to an axis-aligned grid first")
        out.append((axis, 1 if col[axis] > 0 else -1))
    if len({a for a, _ in out}) != 3:
        raise DataError(f"{what}: degenerate direction matrix (two array axes along one patient axis)")
    return out


def orientation_of(geometry: Geometry, what: str = "image") -> str:
    """The orientation code of ``geometry`` (e.g. ``"LPS"``, ``"RAS"``, ``"LSP"``)."""
    names = {v: k for k, v in _LETTERS.items()}
    return "".join(names[a] for a in _axes(geometry, what))


def _permute(array: np.ndarray, perm: tuple[int, int, int], flip: tuple[bool, ...]) -> np.ndarray:
    """Output index axis j is input index axis ``perm[j]``, reversed when ``flip[j]``.

    ``array`` is (..., Z, Y, X): index axis k is NumPy axis ``ndim - 1 - k``; leading
    axes (channels, classes) are kept.
    """
    lead = array.ndim - 3
    out = array
    for j in range(3):
        if flip[j]:
            out = np.flip(out, axis=lead + 2 - perm[j])
    order = list(range(lead)) + [lead + 2 - perm[2 - i] for i in range(3)]
    return np.ascontiguousarray(out.transpose(order))


@dataclass(frozen=True)
class Reorientation:
    """How a volume's arrays go to ``target`` orientation and back (axis permutation and flips).

    Attributes:
        source: the volume's own geometry (what outputs are written in).
        target: the geometry of the reoriented arrays (same physical voxels).
        perm: target index axis j is source index axis ``perm[j]`` (x, y, z order) …
        flip: … traversed backwards when ``flip[j]``.
    """

    source: Geometry
    target: Geometry
    perm: tuple[int, int, int]
    flip: tuple[bool, bool, bool]

    @property
    def is_identity(self) -> bool:
        return self.perm == (0, 1, 2) and not any(self.flip)

    def apply(self, array: np.ndarray) -> np.ndarray:
        """(..., Z, Y, X) array on the source grid → the same on the target grid."""
        return array if self.is_identity else _permute(np.asarray(array), self.perm, self.flip)

    def undo(self, array: np.ndarray) -> np.ndarray:
        """(..., Z, Y, X) array on the target grid → back on the source grid."""
        if self.is_identity:
            return array
        inverse = [0, 0, 0]
        for j, k in enumerate(self.perm):
            inverse[k] = j
        inv = tuple(inverse)
        return _permute(np.asarray(array), inv, tuple(self.flip[inv[k]] for k in range(3)))


def reorientation(geometry: Geometry, target: str = TRAINING_ORIENTATION,
                  what: str = "image") -> Reorientation:
    """The :class:`Reorientation` of a volume with ``geometry`` to ``target`` orientation.

    Raises:
        DataError: an oblique or degenerate direction (the message names ``what``).
    """
    target = check_code(target)
    source_axes = _axes(geometry, what)
    perm, flip = [0, 0, 0], [False, False, False]
    for j, letter in enumerate(target):
        axis, sign = _LETTERS[letter]
        k = next(k for k, (a, _) in enumerate(source_axes) if a == axis)
        perm[j], flip[j] = k, source_axes[k][1] != sign
    if perm == [0, 1, 2] and not any(flip):
        return Reorientation(geometry, geometry, (0, 1, 2), (False, False, False))
    corner = [geometry.size[k] - 1 if flip[j] else 0 for j, k in enumerate(perm)]
    index = [0.0, 0.0, 0.0]
    for j, k in enumerate(perm):
        index[k] = corner[j]
    d = geometry.matrix
    direction = np.stack([d[:, perm[j]] * (-1.0 if flip[j] else 1.0) for j in range(3)], axis=1)
    reoriented = Geometry(tuple(geometry.index_to_physical(index)),
                          tuple(geometry.spacing[k] for k in perm),
                          tuple(direction.ravel()), tuple(geometry.size[k] for k in perm))
    return Reorientation(geometry, reoriented, tuple(perm), tuple(flip))


def to_training_orientation(array: np.ndarray, geometry: Geometry, what: str = "image",
                            target: str = TRAINING_ORIENTATION) -> tuple[np.ndarray, Reorientation]:
    """``array`` (..., Z, Y, X) in ``target`` orientation, and how to bring results back."""
    r = reorientation(geometry, target, what)
    return r.apply(array), r
