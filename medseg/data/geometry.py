"""Image geometry in SimpleITK conventions.

A volume's voxel ``(i, j, k)`` (x, y, z index order) sits at the physical point

    p = origin + D · diag(spacing) · (i, j, k)ᵀ

in LPS millimetres, where ``D`` is the 3×3 direction matrix (stored row-major,
its columns are the unit vectors of the x, y and z axes). This is what
``sitk.Image.GetOrigin/GetSpacing/GetDirection`` report, so a mask written with
:meth:`Geometry.apply_to` lies exactly on the scan it was predicted from.
NumPy arrays use the reversed order ``(z, y, x)``, as ``sitk.GetArrayFromImage``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk


@dataclass(frozen=True)
class Geometry:
    """Origin, spacing, direction and size of a 3D image, (x, y, z) order.

    Args:
        origin: physical position (mm, LPS) of voxel (0, 0, 0).
        spacing: voxel size (mm) along x, y, z.
        direction: 9 floats, the row-major 3×3 direction matrix.
        size: number of voxels along x, y, z.
    """

    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]
    direction: tuple[float, ...]
    size: tuple[int, int, int]

    def __post_init__(self) -> None:
        object.__setattr__(self, "origin", tuple(float(v) for v in self.origin))
        object.__setattr__(self, "spacing", tuple(float(v) for v in self.spacing))
        object.__setattr__(self, "direction", tuple(float(v) for v in self.direction))
        object.__setattr__(self, "size", tuple(int(v) for v in self.size))
        if len(self.origin) != 3 or len(self.spacing) != 3 or len(self.size) != 3:
            raise ValueError("Geometry needs 3 origin, spacing and size values")
        if len(self.direction) != 9:
            raise ValueError("Geometry.direction needs 9 values (row-major 3×3)")

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_sitk(cls, img: "sitk.Image") -> "Geometry":
        """The geometry SimpleITK reports for ``img`` (2D images get a unit z axis)."""
        if img.GetDimension() == 2:
            o, s, d = img.GetOrigin(), img.GetSpacing(), img.GetDirection()
            return cls((o[0], o[1], 0.0), (s[0], s[1], 1.0),
                       (d[0], d[1], 0.0, d[2], d[3], 0.0, 0.0, 0.0, 1.0),
                       (*img.GetSize(), 1))
        if img.GetDimension() != 3:
            raise ValueError(f"expected a 2D or 3D image, got {img.GetDimension()}D")
        return cls(img.GetOrigin(), img.GetSpacing(), img.GetDirection(), img.GetSize())

    @classmethod
    def from_dict(cls, d: dict) -> "Geometry":
        return cls(tuple(d["origin"]), tuple(d["spacing"]), tuple(d["direction"]), tuple(d["size"]))

    def to_dict(self) -> dict:
        """JSON-serialisable form (checkpoints, caches)."""
        return {"origin": list(self.origin), "spacing": list(self.spacing),
                "direction": list(self.direction), "size": list(self.size)}

    # ------------------------------------------------------------------ use
    @property
    def matrix(self) -> np.ndarray:
        """The 3×3 direction matrix (columns = axis unit vectors)."""
        return np.asarray(self.direction, dtype=np.float64).reshape(3, 3)

    @property
    def shape(self) -> tuple[int, int, int]:
        """The NumPy array shape (z, y, x)."""
        return (self.size[2], self.size[1], self.size[0])

    def index_to_physical(self, index: Sequence[float]) -> np.ndarray:
        """Physical point (mm) of a continuous (x, y, z) index."""
        idx = np.asarray(index, dtype=np.float64)
        return np.asarray(self.origin) + self.matrix @ (np.asarray(self.spacing) * idx)

    def physical_to_index(self, point: Sequence[float]) -> np.ndarray:
        """Continuous (x, y, z) index of a physical point (mm)."""
        rel = np.asarray(point, dtype=np.float64) - np.asarray(self.origin)
        return np.linalg.solve(self.matrix, rel) / np.asarray(self.spacing)

    def apply_to(self, img: "sitk.Image") -> "sitk.Image":
        """Copy origin, spacing and direction onto ``img`` (in place; returned too)."""
        if tuple(img.GetSize()) != self.size:
            raise ValueError(f"image size {img.GetSize()} differs from geometry size {self.size}")
        img.SetOrigin(self.origin)
        img.SetSpacing(self.spacing)
        img.SetDirection(self.direction)
        return img

    def to_sitk(self, array: np.ndarray) -> "sitk.Image":
        """A SimpleITK image holding ``array`` (z, y, x) with this geometry."""
        import SimpleITK as sitk

        return self.apply_to(sitk.GetImageFromArray(np.ascontiguousarray(array)))

    def __str__(self) -> str:
        fmt = lambda v: "(" + ", ".join(f"{x:g}" for x in v) + ")"  # noqa: E731
        return (f"size {fmt(self.size)}, spacing {fmt(self.spacing)}, origin {fmt(self.origin)}, "
                f"direction {fmt(self.direction)}")
