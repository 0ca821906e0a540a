"""Finding the cases of a dataset in the layout it is distributed in.

* Pancreas-CT, TCIA layout::

      ROOT/Pancreas-CT/PANCREAS_0001/<study>/<series>/1-001.dcm …
      ROOT/TCIA_pancreas_labels-02-05-2017/label0001.nii.gz

  Patients and labels are paired by their numbers (``PANCREAS_0001`` ↔
  ``label0001``), not by position in a listing. ``ROOT`` may also be the
  ``Pancreas-CT`` folder itself (labels then in a sibling folder). Any folder
  whose name contains "label" is searched for the label files.
* Pancreas-CT, Medical Segmentation Decathlon layout (Task07_Pancreas)::

      ROOT/imagesTr/pancreas_001.nii.gz, ROOT/labelsTr/pancreas_001.nii.gz, ROOT/dataset.json

  (macOS ``._*`` files that ship in the MSD archives are skipped).
* BAGLS: ``ROOT/training/N.png`` (+ ``N_seg.png``, ``N.meta``) and ``ROOT/test/…``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError

TCIA_IMAGES = "Pancreas-CT"
TCIA_LABELS = "TCIA_pancreas_labels-02-05-2017"
BAGLS_SPLITS = ("training", "test")

_PATIENT = re.compile(r"^pancreas[_-]?(\d+)$", re.IGNORECASE)
_NIFTI = re.compile(r"^(.*?)(\d+)\.nii(\.gz)?$", re.IGNORECASE)
_FRAME = re.compile(r"^(\d+)\.(png|jpe?g|bmp|tiff?)$", re.IGNORECASE)


@dataclass(frozen=True)
class CaseRef:
    """Where one case lives: ``image`` (a folder or file) and ``label`` (or None); an
    nnU-Net case also lists every channel file (``image`` is the first)."""

    case_id: str
    image: Path
    label: Path | None
    channels: tuple[Path, ...] = ()


def _require_root(root: str | os.PathLike) -> Path:
    r = Path(root)
    if not r.exists():
        raise DataError(f"{r}: dataset root not found")
    if not r.is_dir():
        raise DataError(f"{r}: dataset root is not a folder")
    if not any(not c.name.startswith(".") for c in r.iterdir()):
        raise DataError(f"{r}: empty folder (no dataset files)")
    return r


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(c for c in folder.iterdir() if c.is_dir() and not c.name.startswith("."))


def _tcia_images_dir(root: Path) -> Path | None:
    if (root / TCIA_IMAGES).is_dir():
        return root / TCIA_IMAGES
    if any(_PATIENT.match(d.name) for d in _visible_dirs(root)):
        return root
    return None


def _msd_dir(root: Path) -> Path | None:
    if (root / "imagesTr").is_dir():
        return root
    task = root / "Task07_Pancreas"
    if (task / "imagesTr").is_dir():
        return task
    return None


def detect_layout(root: str | os.PathLike, dataset: str) -> str:
    """``"tcia"`` | ``"msd"`` for ``dataset="pancreas"``; ``"bagls"`` for BAGLS."""
    r = _require_root(root)
    if dataset == "bagls":
        if any((r / s).is_dir() for s in BAGLS_SPLITS):
            return "bagls"
        raise DataError(f"{r}: not a BAGLS layout (no training/ or test/ folder)")
    if dataset != "pancreas":
        raise DataError(f"unknown dataset '{dataset}' (pancreas or bagls)")
    if _msd_dir(r) is not None:
        return "msd"
    if _tcia_images_dir(r) is not None:
        return "tcia"
    raise DataError(f"{r}: no Pancreas-CT layout found (expected {TCIA_IMAGES}/PANCREAS_NNNN/ "
                    f"for TCIA or imagesTr/ for the Medical Segmentation Decathlon)")


def _numbered_niftis(folder: Path) -> dict[int, Path]:
    out: dict[int, Path] = {}
    for f in sorted(folder.iterdir()):
        if f.name.startswith(".") or not f.is_file():
            continue
        m = _NIFTI.match(f.name)
        if not m:
            continue
        n = int(m.group(2))
        if n in out:
            raise DataError(f"{f}: second label/image file numbered {n} (also {out[n].name})")
        out[n] = f
    return out


def _tcia_label_dirs(root: Path, images: Path) -> list[Path]:
    places = [root] + ([root.parent] if images == root else [])
    dirs: list[Path] = []
    for place in places:
        if (place / TCIA_LABELS).is_dir():
            dirs.append(place / TCIA_LABELS)
        dirs += [d for d in _visible_dirs(place)
                 if "label" in d.name.lower() and d.name != TCIA_LABELS]
    return dirs


def _discover_tcia(root: Path, require_labels: bool) -> list[CaseRef]:
    images = _tcia_images_dir(root)
    if images is None:
        raise DataError(f"{root}: no {TCIA_IMAGES}/PANCREAS_NNNN folders (TCIA layout)")
    patients: dict[int, Path] = {}
    for d in _visible_dirs(images):
        m = _PATIENT.match(d.name)
        if m:
            n = int(m.group(1))
            if n in patients:
                raise DataError(f"{d}: second patient folder numbered {n} (also {patients[n]}); "
                                "keep one of them")
            patients[n] = d
    if not patients:
        raise DataError(f"{images}: no PANCREAS_NNNN patient folders")
    labels: dict[int, Path] = {}
    for ldir in _tcia_label_dirs(root, images):
        for n, f in _numbered_niftis(ldir).items():
            labels.setdefault(n, f)
    refs = []
    for n, d in sorted(patients.items()):
        label = labels.get(n)
        if label is None and require_labels:
            raise DataError(f"{d}: patient has no label (expected {TCIA_LABELS}/label{n:04d}.nii.gz)")
        refs.append(CaseRef(d.name, d, label))
    return refs


def _discover_msd(root: Path, require_labels: bool) -> list[CaseRef]:
    base = _msd_dir(root)
    if base is None:
        raise DataError(f"{root}: no imagesTr/ folder (Medical Segmentation Decathlon layout)")
    images = _numbered_niftis(base / "imagesTr")
    if not images:
        raise DataError(f"{base / 'imagesTr'}: empty folder (no NIfTI images)")
    labels = _numbered_niftis(base / "labelsTr") if (base / "labelsTr").is_dir() else {}
    refs = []
    for n, f in sorted(images.items()):
        label = labels.get(n)
        if label is None and require_labels:
            raise DataError(f"{f}: image has no label (expected labelsTr/{f.name})")
        case_id = f.name.split(".nii")[0]
        refs.append(CaseRef(case_id, f, label))
    return refs


def discover_pancreas(root: str | os.PathLike, layout: str = "auto", *,
                      require_labels: bool = True) -> list[CaseRef]:
    """The labelled scans under ``root``, sorted by patient number.

    Args:
        root: dataset root (see the module docstring for the layouts).
        layout: ``"tcia"``, ``"msd"`` or ``"auto"`` (detected).
        require_labels: a patient without label is an error (True) or a
            :class:`CaseRef` with ``label=None`` (False; the integrity check).
    """
    r = _require_root(root)
    if layout == "auto":
        layout = detect_layout(r, "pancreas")
    if layout == "tcia":
        return _discover_tcia(r, require_labels)
    if layout == "msd":
        return _discover_msd(r, require_labels)
    raise DataError(f"unknown Pancreas-CT layout '{layout}' (tcia, msd or auto)")


def _frames(folder: Path) -> list[CaseRef]:
    found = []
    for f in folder.iterdir():
        m = _FRAME.match(f.name)
        if m and f.is_file():
            seg = f.with_name(f"{f.stem}_seg.png")
            found.append((int(m.group(1)), CaseRef(f"{folder.name}/{f.stem}", f,
                                                    seg if seg.is_file() else None)))
    return [ref for _, ref in sorted(found, key=lambda t: t[0])]


def discover_bagls(root: str | os.PathLike) -> dict[str, list[CaseRef]]:
    """``{"training": [...], "test": [...]}`` frames sorted by number, ids like ``"training/12"``.

    ``label`` is the ``N_seg.png`` path, or None if it is missing.
    """
    r = _require_root(root)
    if not any((r / s).is_dir() for s in BAGLS_SPLITS):
        raise DataError(f"{r}: not a BAGLS layout (no training/ or test/ folder)")
    out = {s: _frames(r / s) if (r / s).is_dir() else [] for s in BAGLS_SPLITS}
    if not any(out.values()):
        raise DataError(f"{r}: empty dataset (no N.png frames in training/ or test/)")
    return out
