"""Any dataset in nnU-Net v2's raw format (and the Medical Segmentation Decathlon's).

The layout (nnU-Net documentation, ``dataset_format.md``)::

    DatasetXXX_Name/
      dataset.json
      imagesTr/{case}_{XXXX}{file_ending}   # XXXX: 4-digit channel index 0000, 0001, …
      labelsTr/{case}{file_ending}          # integer label map, the images' geometry
      imagesTs/{case}_{XXXX}{file_ending}   # optional, unlabelled

``dataset.json`` (v2): ``channel_names`` ({"0": "CT", "1": "T2"}), ``labels``
({"background": 0, "organ": 1, …}: background 0, consecutive integers),
``numTraining``, ``file_ending``. The Decathlon's older file is read too: ``modality``
({"0": "CT"}), ``labels`` ({"0": "background", "1": "pancreas"}) and a ``training``
list of {"image", "label"} paths, one (4D for several channels) file per case.

What medseg does with the rest of ``dataset.json``:

* **refused**, one line naming the file and the key: region-based training (a label
  given as a list of values, ``regions_class_order``) and an ``ignore`` label —
  medseg trains one class per label value; silently treating regions as classes would
  change the task;
* **ignored with a one-line note** (:attr:`DatasetDescription.notes`):
  ``overwrite_image_reader_writer`` (medseg picks the reader by file ending) and any
  other key it does not know; the descriptive keys (``name``, ``description``,
  ``reference``, ``licence``, ``release``, ``tensorImageSize``, ``test``,
  ``numTest``) are read silently.

3D files (``.nii.gz``, ``.nii``, ``.nrrd``, ``.mha``, ``.mhd``) are read with
SimpleITK; every case is brought to the training orientation
(:mod:`medseg.data.orientation`) — channels and label together — before slicing.
2D ``.png`` (and other natural-image) files are read as nnU-Net's ``NaturalImage2DIO``
reads them: an RGB file holds three channels (``channel_names`` R, G, B), a grayscale
file one; the frame is one slice of a (C, 1, H, W) volume with unit spacing.

One :class:`DatasetDescription` answers "which labels, which channels" for training,
metrics, reports and ``medseg predict``; the binary datasets have one too
(:func:`builtin_description`); :func:`describe_dataset` gives a config's.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import DataError
from .geometry import Geometry

#: dataset.json keys read without comment (descriptive)
_DESCRIPTIVE = {"name", "description", "reference", "licence", "license", "release",
                "tensorImageSize", "test", "numTest", "dataset_name"}
#: dataset.json keys read for what they mean
_USED = {"channel_names", "modality", "labels", "numTraining", "file_ending", "training"}
#: keys that change the task; medseg trains one class per label value
_REFUSED = {"regions_class_order": "region-based training (regions_class_order) is not supported: "
                                   "medseg trains one class per label value"}
#: file endings read as 2D natural images
NATURAL_ENDINGS = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg")
VOLUME_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".nhdr")
#: geometry tolerance between a case's channels and label (nnU-Net compares with allclose)
_GEOMETRY_ATOL = 1e-3

_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


@dataclass(frozen=True)
class DatasetDescription:
    """Which labels, which channels: one answer for the whole pipeline.

    Attributes:
        name: the dataset's name (the folder's ``DatasetXXX_Name`` when dataset.json has none).
        channels: the channel names in input order (``"CT"`` selects CT normalisation).
        labels: label name → value, background 0 included, sorted by value.
        file_ending: ``.nii.gz``, ``.png``, …
        num_training: ``numTraining`` as declared.
        notes: one line per dataset.json key ignored (shown once by the commands).
    """

    name: str
    channels: tuple[str, ...]
    labels: dict[str, int]
    file_ending: str = ".nii.gz"
    num_training: int = 0
    notes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def foreground(self) -> list[tuple[str, int]]:
        """(name, value) of every foreground label, by value."""
        return [(n, v) for n, v in self.labels.items() if v != 0]

    @property
    def num_classes(self) -> int:
        """Network output channels: background + one per foreground label."""
        return 1 + len(self.foreground)

    @property
    def is_2d(self) -> bool:
        return self.file_ending.lower() in NATURAL_ENDINGS

    @property
    def modality(self) -> str:
        """The DICOM Modality its images have: CT when every channel is named CT, MR for MR
        sequence names (T1, T2, FLAIR, ADC, DWI, MR…), ES for BAGLS, else OT (other)."""
        names = [c.strip().upper() for c in self.channels]
        if self.name == "BAGLS":
            return "ES"
        if all(n == "CT" or n.startswith("CT") for n in names):
            return "CT"
        if all(re.match(r"^(MRI?|T1|T2|FLAIR|ADC|DWI|PD|T1C|T1CE|T1GD|T2W|T1W)", n) for n in names):
            return "MR"
        return "OT"

    def label_name(self, value: int) -> str:
        return next(n for n, v in self.labels.items() if v == value)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (checkpoints, run folders)."""
        return {"name": self.name, "channels": list(self.channels), "labels": dict(self.labels),
                "file_ending": self.file_ending, "num_training": self.num_training}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DatasetDescription":
        return cls(str(d["name"]), tuple(str(c) for c in d["channels"]),
                   {str(k): int(v) for k, v in d["labels"].items()}, str(d.get("file_ending", ".nii.gz")),
                   int(d.get("num_training", 0)))


def builtin_description(dataset: str, channels: int = 1, merge_tumour: bool = True) -> DatasetDescription:
    """The description of the two built-in datasets: binary, except Pancreas-CT with
    ``merge_tumour=False`` (the Decathlon's pancreas and tumour as two classes)."""
    if dataset == "pancreas":
        labels = {"background": 0, "pancreas": 1} if merge_tumour else \
            {"background": 0, "pancreas": 1, "tumour": 2}
        return DatasetDescription("Pancreas-CT", ("CT",), labels)
    names = ("R", "G", "B") if channels == 3 else ("gray",)
    return DatasetDescription("BAGLS", names, {"background": 0, "glottis": 1}, ".png")


def describe_dataset(data_cfg: Mapping[str, Any]) -> DatasetDescription:
    """Which labels and channels a config's dataset has: the one answer for the model's
    heads, the loss, the metrics, the report and the checkpoint."""
    if data_cfg["dataset"] == "nnunet":
        return read_description(data_cfg["root"])
    return builtin_description(data_cfg["dataset"], int(data_cfg.get("channels", 1)),
                               bool(data_cfg.get("merge_tumour", True)))


# ----------------------------------------------------------------------------- dataset.json
def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        inside = sorted(f.parent.name for f in path.parent.glob("*/dataset.json"))
        hint = f"; it holds {', '.join(inside[:3])}: give one of them" if inside else ""
        raise DataError(f"{path}: dataset.json not found (an nnU-Net raw dataset folder has one){hint}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: not valid JSON ({str(exc).splitlines()[0][:100]})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object")
    return data


def _index_map(path: Path, key: str, raw: Any) -> list[str]:
    """{"0": name, "1": name} → [name, name] (keys 0 … n-1)."""
    if not isinstance(raw, dict) or not raw:
        raise DataError(f"{path}: '{key}' must be a non-empty mapping {{\"0\": name, …}}")
    try:
        items = sorted((int(k), str(v)) for k, v in raw.items())
    except (TypeError, ValueError):
        raise DataError(f"{path}: '{key}' keys must be channel indices \"0\", \"1\", …") from None
    if [i for i, _ in items] != list(range(len(items))):
        raise DataError(f"{path}: '{key}' indices must be 0 … {len(items) - 1}, got {[i for i, _ in items]}")
    return [v for _, v in items]


def _labels(path: Path, raw: Any, decathlon: bool) -> dict[str, int]:
    if not isinstance(raw, dict) or not raw:
        raise DataError(f"{path}: 'labels' must be a non-empty mapping")
    if decathlon:  # {"0": "background", "1": "pancreas"}
        pairs = [(str(v), k) for k, v in raw.items()]
    else:
        pairs = list(raw.items())
    labels: dict[str, int] = {}
    for name, value in pairs:
        if isinstance(value, (list, tuple)):
            raise DataError(f"{path}: label '{name}' is a region (a list of values): region-based "
                            "training is not supported, medseg trains one class per label value")
        try:
            v = int(value)
        except (TypeError, ValueError):
            raise DataError(f"{path}: label '{name}' has value {value!r}, expected an integer") from None
        if isinstance(value, float) and value != v or isinstance(value, bool):
            raise DataError(f"{path}: label '{name}' has value {value!r}, expected an integer")
        if str(name).lower() == "ignore":
            raise DataError(f"{path}: an 'ignore' label (partial annotation) is not supported")
        labels[str(name)] = v
    values = sorted(labels.values())
    if values != list(range(len(values))):
        raise DataError(f"{path}: label values must be 0 (background) and consecutive integers, got {values}")
    if len(values) > 255:
        raise DataError(f"{path}: {len(values)} labels; medseg stores label maps as uint8 (at most 255)")
    return dict(sorted(labels.items(), key=lambda kv: kv[1]))


def read_description(root: str | os.PathLike) -> DatasetDescription:
    """The :class:`DatasetDescription` of the dataset folder ``root`` (its dataset.json).

    Raises:
        DataError: a missing or malformed dataset.json, or a key that would change the
            task (regions, an ignore label); the message names the file and the key.
    """
    path = Path(root) / "dataset.json"
    data = _json(path)
    decathlon = "modality" in data and "channel_names" not in data
    if "channel_names" not in data and "modality" not in data:
        raise DataError(f"{path}: needs 'channel_names' (nnU-Net v2) or 'modality' (Decathlon)")
    channels = _index_map(path, "channel_names" if not decathlon else "modality",
                          data["channel_names"] if not decathlon else data["modality"])
    if "labels" not in data:
        raise DataError(f"{path}: needs 'labels'")
    labels = _labels(path, data["labels"], decathlon)
    for key, why in _REFUSED.items():
        if key in data:
            raise DataError(f"{path}: {why}")
    ending = data.get("file_ending", ".nii.gz")
    if not isinstance(ending, str) or not ending.startswith("."):
        raise DataError(f"{path}: 'file_ending' must be like \".nii.gz\", got {ending!r}")
    if ending.lower() not in VOLUME_ENDINGS + NATURAL_ENDINGS:
        raise DataError(f"{path}: file_ending {ending!r} is not read by medseg "
                        f"({', '.join(VOLUME_ENDINGS + NATURAL_ENDINGS)})")
    n = data.get("numTraining", 0)
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise DataError(f"{path}: 'numTraining' must be a count, got {n!r}")
    notes = []
    for key in sorted(set(data) - _USED - _DESCRIPTIVE):
        what = ("medseg picks the reader by file ending" if key == "overwrite_image_reader_writer"
                else "not used by medseg")
        notes.append(f"{path}: key '{key}' ignored ({what})")
    name = str(data.get("name") or Path(root).resolve().name)
    return DatasetDescription(name, tuple(channels), labels, ending, n, tuple(notes))


# ----------------------------------------------------------------------------- discovery
@dataclass(frozen=True)
class NnunetCase:
    """Where one case lives: one file per channel (or one 4D/RGB file for all), a label."""

    case_id: str
    channels: tuple[Path, ...]
    label: Path | None


def _strip(name: str, ending: str) -> str | None:
    return name[: -len(ending)] if name.lower().endswith(ending.lower()) else None


def _split_folder(folder: Path, description: DatasetDescription) -> tuple[dict[str, dict[int, Path]], list[str]]:
    """case → {channel index: file} of an images folder, and one line per stray file."""
    cases: dict[str, dict[int, Path]] = {}
    strays = []
    for f in sorted(folder.iterdir()):
        if f.name.startswith(".") or not f.is_file():
            continue
        stem = _strip(f.name, description.file_ending)
        m = _CHANNEL.match(stem) if stem is not None else None
        if m is None:
            strays.append(f"{f}: not named {{case}}_{{XXXX}}{description.file_ending}")
            continue
        cases.setdefault(m["case"], {})[int(m["channel"])] = f
    return cases, strays


def _files_per_case(description: DatasetDescription) -> int:
    """Channel files per case: one per channel, except RGB natural images (one file, 3 channels)."""
    if description.is_2d and len(description.channels) == 3:
        return 1
    return len(description.channels)


def _collect(root: Path, description: DatasetDescription, folder: str,
             require_labels: bool) -> tuple[list[NnunetCase], list[tuple[str | None, str]]]:
    """Every case of ``root/folder`` and every problem found on the way, as
    ``(case id or None, line)``; a case with a missing channel is left out of the list."""
    if _decathlon_list(root) is not None and folder == "imagesTr":
        return _decathlon_cases(root, description, require_labels)
    images = root / folder
    if not images.is_dir():
        return [], [(None, f"{images}: folder not found")]
    found, strays = _split_folder(images, description)
    problems: list[tuple[str | None, str]] = [(None, line) for line in strays]
    if not found:
        problems.append((None, f"{images}: no {{case}}_{{XXXX}}{description.file_ending} files"))
    n, ending = _files_per_case(description), description.file_ending
    cases = []
    for case_id, files in sorted(found.items()):
        missing = [i for i in range(n) if i not in files]
        extra = [i for i in sorted(files) if i >= n]
        problems += [(case_id, f"{images / f'{case_id}_{i:04d}{ending}'}: channel {i} of case {case_id} "
                               "not found") for i in missing]
        problems += [(case_id, f"{files[i]}: channel {i} of case {case_id}, but dataset.json lists "
                               f"{len(description.channels)} channel(s)") for i in extra]
        label = root / "labelsTr" / f"{case_id}{ending}"
        if not label.is_file():
            if require_labels and folder == "imagesTr":
                problems.append((case_id, f"{label}: label of case {case_id} not found"))
            label = None
        if not missing:
            cases.append(NnunetCase(case_id, tuple(files[i] for i in range(n)), label))
    return cases, problems


def discover_nnunet(root: str | os.PathLike, description: DatasetDescription | None = None, *,
                    folder: str = "imagesTr", require_labels: bool = True) -> list[NnunetCase]:
    """The cases of ``root/folder`` (``imagesTr`` or ``imagesTs``), sorted by case id.

    Raises:
        DataError: the first problem — a missing folder, a case missing a channel file,
            or (with ``require_labels``) a case without ``labelsTr/{case}{ending}``.
    """
    root = Path(root)
    description = description or read_description(root)
    cases, problems = _collect(root, description, folder, require_labels)
    if problems:
        raise DataError(problems[0][1])
    return cases


def _decathlon_list(root: Path) -> list | None:
    try:
        data = json.loads((root / "dataset.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if "channel_names" in data or not isinstance(data.get("training"), list):
        return None
    return data["training"]


def _decathlon_cases(root: Path, description: DatasetDescription,
                     require_labels: bool) -> tuple[list[NnunetCase], list[tuple[str | None, str]]]:
    cases, problems = [], []
    for i, item in enumerate(_decathlon_list(root) or []):
        if not isinstance(item, dict) or not isinstance(item.get("image"), str):
            problems.append((None, f"{root / 'dataset.json'}: training[{i}] needs an 'image' path"))
            continue
        image = root / item["image"]
        label = root / item["label"] if isinstance(item.get("label"), str) else None
        case_id = _strip(image.name, description.file_ending) or image.stem
        if not image.is_file():
            problems.append((case_id, f"{image}: image of training[{i}] not found"))
            continue
        if label is None or not label.is_file():
            if require_labels:
                problems.append((case_id, f"{label or image}: label of training[{i}] not found"))
            label = None
        cases.append(NnunetCase(case_id, (image,), label))
    if not cases and not problems:
        problems.append((None, f"{root / 'dataset.json'}: 'training' lists no cases"))
    return sorted(cases, key=lambda c: c.case_id), problems


# ----------------------------------------------------------------------------- reading
@dataclass
class VolumeCase:
    """One case as training and predict see it.

    Attributes:
        case_id: the nnU-Net case identifier.
        image: (C, Z, Y, X) float32, channels in ``channel_names`` order, in the
            training orientation (2D frames: Z = 1).
        label: (Z, Y, X) uint8 label values on the same grid, or None.
        geometry: the geometry of ``image``'s grid (x, y, z order).
        source_geometry: the geometry the files are stored in (outputs are written in it).
    """

    case_id: str
    image: np.ndarray
    label: np.ndarray | None
    geometry: Geometry
    source_geometry: Geometry

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size (z, y, x), the array axes' order."""
        sx, sy, sz = self.geometry.spacing
        return (sz, sy, sx)


def _read_volume(path: Path, what: str) -> tuple[np.ndarray, Geometry]:
    """(C, Z, Y, X) float array of a 3D (or 4D Decathlon multi-channel) file, and its geometry."""
    import SimpleITK as sitk

    from .ct import nifti_nonfinite_count, read_sitk_image

    img = read_sitk_image(path, what)
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise DataError(f"{path}: {img.GetNumberOfComponentsPerPixel()} components per voxel; "
                        "nnU-Net stores one channel per file")
    if img.GetDimension() == 4:
        arr = sitk.GetArrayFromImage(img)  # (C, Z, Y, X)
        geometry = Geometry.from_sitk(img[:, :, :, 0])
    elif img.GetDimension() in (2, 3):
        arr = sitk.GetArrayFromImage(img)
        arr = arr[None] if arr.ndim == 3 else arr[None, None]
        geometry = Geometry.from_sitk(img)
    else:
        raise DataError(f"{path}: expected a 3D image, found {img.GetDimension()}D")
    if 0 in arr.shape:
        raise DataError(f"{path}: empty image (shape {arr.shape})")
    if arr.dtype.kind == "c":
        raise DataError(f"{path}: complex voxel values")
    if what == "image":
        arr = arr.astype(np.float32, copy=False)
        bad = max(nifti_nonfinite_count(path), int(arr.size - np.count_nonzero(np.isfinite(arr))))
        if bad:
            raise DataError(f"{path}: image contains {bad} NaN/infinite voxels")
    return arr, geometry


def _read_natural(path: Path) -> tuple[np.ndarray, Geometry]:
    """(C, 1, H, W) of a PNG frame: RGB → 3 channels, grayscale → 1; unit spacing."""
    from .bagls import read_frame_image

    arr = np.asarray(read_frame_image(path))
    arr = np.moveaxis(arr, -1, 0)[:, None] if arr.ndim == 3 else arr[None, None]
    h, w = arr.shape[-2:]
    return arr.astype(np.float32), Geometry((0.0, 0.0, 0.0), (1.0, 1.0, 1.0),
                                            (1, 0, 0, 0, 1, 0, 0, 0, 1), (w, h, 1))


def read_case_file(path: Path, description: DatasetDescription, what: str = "image") -> tuple[np.ndarray, Geometry]:
    """One file of a case: (C, Z, Y, X) array and geometry, by the dataset's file ending."""
    if description.is_2d:
        arr, geometry = _read_natural(path)
        if what == "label" and arr.shape[0] != 1:
            raise DataError(f"{path}: label must be a single-channel image, found {arr.shape[0]} channels")
        return arr, geometry
    return _read_volume(path, what)


def geometry_mismatch(a: Geometry, b: Geometry) -> str | None:
    """What differs between two grids beyond nnU-Net's tolerance (None: the same grid)."""
    if a.size != b.size:
        return f"size {a.size} vs {b.size}"
    for name in ("spacing", "origin", "direction"):
        if not np.allclose(getattr(a, name), getattr(b, name), atol=_GEOMETRY_ATOL, rtol=0):
            return f"{name} {tuple(round(v, 4) for v in getattr(a, name))} vs " \
                   f"{tuple(round(v, 4) for v in getattr(b, name))}"
    return None


def _label_values(path: Path, arr: np.ndarray, description: DatasetDescription) -> np.ndarray:
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise DataError(f"{path}: label contains NaN/infinite voxels")
        if not np.array_equal(arr, np.round(arr)):
            raise DataError(f"{path}: label holds non-integer values")
    found = np.unique(arr)
    allowed = set(description.labels.values())
    bad = [int(v) for v in found.tolist() if int(v) not in allowed]
    if bad:
        raise DataError(f"{path}: label values {bad} are not in dataset.json's labels {sorted(allowed)}")
    return arr.astype(np.uint8)


def read_channels(files: Sequence[Path], description: DatasetDescription) -> tuple[np.ndarray, Geometry]:
    """The case's channels stacked (C, Z, Y, X) in ``channel_names`` order, on one grid."""
    arrays, geometry = [], None
    for f in files:
        arr, g = read_case_file(Path(f), description)
        if geometry is None:
            geometry = g
        elif (why := geometry_mismatch(g, geometry)) is not None:
            raise DataError(f"{f}: channel grid differs from {Path(files[0]).name} ({why})")
        arrays.append(arr)
    image = np.concatenate(arrays, axis=0)
    if image.shape[0] != len(description.channels):
        raise DataError(f"{files[0]}: {image.shape[0]} channel(s) read, dataset.json lists "
                        f"{len(description.channels)} ({', '.join(description.channels)})")
    assert geometry is not None
    return image, geometry


def load_nnunet_case(case: NnunetCase, description: DatasetDescription) -> VolumeCase:
    """Read a case: channels stacked, label checked against dataset.json and the channels'
    grid, both brought to the training orientation.

    Raises:
        DataError: naming the file — unreadable, a missing channel, NaN/Inf voxels, a
            label value not in dataset.json, a label or channel on another grid, an
            oblique direction.
    """
    from .orientation import to_training_orientation

    image, geometry = read_channels(case.channels, description)
    label = None
    if case.label is not None:
        raw, lgeom = read_case_file(case.label, description, "label")
        if (why := geometry_mismatch(lgeom, geometry)) is not None:
            raise DataError(f"{case.label}: label grid differs from the image of case {case.case_id} ({why})")
        label = _label_values(case.label, raw[0], description)
    if description.is_2d:
        return VolumeCase(case.case_id, image, label, geometry, geometry)
    image, turn = to_training_orientation(image, geometry, str(case.channels[0]))
    if label is not None:
        label = turn.apply(label)
    return VolumeCase(case.case_id, image, label, turn.target, geometry)


def case_problems(case: NnunetCase, description: DatasetDescription) -> list[str]:
    """Every problem of one case, one line each naming the file (nnU-Net's integrity checks:
    readable channels without NaN/Inf, one grid for channels and label, label values in
    dataset.json; and medseg's: an orientation it can slice)."""
    from .orientation import reorientation

    problems, grids = [], []
    for f in case.channels:
        try:
            grids.append((f, read_case_file(f, description)[1]))
        except DataError as exc:
            problems.append(str(exc))
    for f, g in grids[1:]:
        if (why := geometry_mismatch(g, grids[0][1])) is not None:
            problems.append(f"{f}: channel grid differs from {grids[0][0].name} ({why})")
    if case.label is not None:
        try:
            raw, lgeom = read_case_file(case.label, description, "label")
            if grids and (why := geometry_mismatch(lgeom, grids[0][1])) is not None:
                problems.append(f"{case.label}: label grid differs from the image of case "
                                f"{case.case_id} ({why})")
            _label_values(case.label, raw[0], description)
        except DataError as exc:
            problems.append(str(exc))
    if grids and not description.is_2d:
        try:
            reorientation(grids[0][1], what=str(grids[0][0]))
        except DataError as exc:
            problems.append(str(exc))
    return problems
