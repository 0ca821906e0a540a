"""The 2D slice cache: decode and preprocess every case once, reuse across runs.

Decoding DICOM and resizing 512×512 slices every epoch would starve training, so
``medseg data prepare`` (and every ``medseg train``) stores each case, already
windowed and resized, as one ``.npz`` file:

``<cache_dir>/<dataset>/<settings hash>/<case id>.npz`` with

* ``image``        (N, C, H, W) float16 network input in [0, 1] (N slices; 1 for a frame),
* ``label``        (N, H, W) uint8 mask at the training size (nearest neighbour),
* ``native_label`` the mask on the case's native grid, bit-packed, with
  ``native_shape`` (N, Y, X) — metrics are computed there,
* ``spacing``      the native grid's voxel size for the boundary metrics: (z, y, x)
  mm for a CT scan (the array's axis order); (1, 1) for a BAGLS frame — a 2D
  image in pixels (an entry without it is rebuilt),
* ``fingerprint``  a hash of the source files (paths, sizes, mtimes).

The settings hash covers everything that changes the stored arrays (dataset,
size, window, channels, tumour merge, orientation, cache format version), so changed
settings rebuild into a new folder, and a changed source file rebuilds its entry.
Each entry is written to a temporary name and renamed, so an interrupted prepare
never leaves a file that a later run trusts.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import DataError
from ..io import atomic_write_text, atomic_write_with, folder_kind, mark_folder
from .orientation import TRAINING_ORIENTATION
from .plan import dataset_plan, normalise, slices_for_network, uses_plan
from .preprocess import frame_to_channels, preprocess_ct, preprocess_frame, resize_label

CACHE_VERSION = 1


def settings_of(data_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The preprocessing settings that determine the cached arrays."""
    s: dict[str, Any] = {"version": CACHE_VERSION, "dataset": data_cfg["dataset"],
                         "size": [int(v) for v in data_cfg["size"]]}
    if data_cfg["dataset"] == "pancreas":
        s["window"] = [float(v) for v in data_cfg["window"]]
        s["merge_tumour"] = bool(data_cfg["merge_tumour"])
        s["orientation"] = TRAINING_ORIENTATION  # every case is sliced in this orientation
    elif data_cfg["dataset"] == "nnunet":
        s["orientation"] = TRAINING_ORIENTATION
    else:
        s["channels"] = int(data_cfg["channels"])
    if uses_plan(data_cfg):
        s["plan"] = dataset_plan(data_cfg)  # labels, channels, normalisation, slice axis
        s.pop("window", None)
    return s


def _entry(x: torch.Tensor, y: torch.Tensor, native: np.ndarray,
           spacing: Sequence[float]) -> dict[str, np.ndarray]:
    """The arrays of one cache entry; the native label bit-packed when binary, else as values."""
    native = np.asarray(native, dtype=np.uint8)
    binary = native.max(initial=0) <= 1
    return {
        "image": x.to(torch.float16).numpy(),
        "label": y.numpy().astype(np.uint8),
        "native_label": np.packbits(native.astype(bool).ravel()) if binary else native.ravel(),
        "native_bits": np.asarray(1 if binary else 8),
        "native_shape": np.asarray(native.shape, dtype=np.int64),
        "spacing": np.asarray(spacing, dtype=np.float64),
    }


def _ending(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _hash(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def source_fingerprint(image: str | os.PathLike, label: str | os.PathLike | None,
                       channels: Sequence[str | os.PathLike] | None = None) -> str:
    """Hash of the source files' paths, sizes and modification times (every channel file
    of an nnU-Net case)."""
    items = []
    for p in (image, label, *(channels or [])):
        if p is None:
            continue
        p = Path(p)
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            try:
                st = f.stat()
            except OSError:
                raise DataError(f"{f}: cannot be read") from None
            items.append((str(f.resolve()), st.st_size, st.st_mtime_ns))
    return _hash(items)


def _safe_name(case_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", case_id)


@dataclass
class PrepareReport:
    built: int
    reused: int
    seconds: float
    folder: Path


class SliceCache:
    """The cache folder for one set of preprocessing settings."""

    def __init__(self, data_cfg: Mapping[str, Any]):
        self.data_cfg = dict(data_cfg)
        self.settings = settings_of(data_cfg)
        self.folder = Path(data_cfg["cache_dir"]) / data_cfg["dataset"] / _hash(self.settings)[:16]

    def entry_path(self, case_id: str) -> Path:
        return self.folder / f"{_safe_name(case_id)}.npz"

    def is_fresh(self, case_id: str, fingerprint: str) -> bool:
        path = self.entry_path(case_id)
        if not path.is_file():
            return False
        try:
            with np.load(path) as z:
                return str(z["fingerprint"]) == fingerprint and "spacing" in z.files
        except Exception:  # unreadable or truncated entry: rebuild it
            return False

    # ------------------------------------------------------------------ build
    def _arrays(self, case_id: str, image: Path, label: Path | None,
                channels: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        from . import load_bagls_frame, load_pancreas_case

        size = self.settings["size"]
        if self.settings["dataset"] == "nnunet":
            return self._nnunet_arrays(case_id, image, label, channels)
        plan = self.settings.get("plan")
        if self.settings["dataset"] == "pancreas":
            case = load_pancreas_case(image, label, merge_tumour=self.settings["merge_tumour"],
                                      case_id=case_id)
            if case.label is None:
                raise DataError(f"{image}: case {case_id} has no label")
            x = (preprocess_ct(case.image, self.settings["window"], size) if plan is None
                 else slices_for_network(normalise(case.image[None], plan), plan))
            native = np.asarray(case.label, dtype=np.uint8)
            y = resize_label(native, size)
            spacing = case.spacing  # (z, y, x), the axis order of `native`
        else:
            frame = load_bagls_frame(image)
            x = (preprocess_frame(frame.image, self.settings["channels"], size)[None] if plan is None
                 else slices_for_network(normalise(frame_to_channels(frame.image, self.settings["channels"])
                                                   [:, None], plan), plan))
            native = np.asarray(frame.mask, dtype=np.uint8)[None]
            y = resize_label(native, size)
            spacing = (1.0, 1.0)  # a frame: 2D, in pixels
        return _entry(x, y, native, spacing)

    def _nnunet_arrays(self, case_id: str, image: Path, label: Path | None,
                       channels: Sequence[str] | None) -> dict[str, np.ndarray]:
        from .nnunet import DatasetDescription, NnunetCase, load_nnunet_case
        from .plan import slice_spacing, to_slices

        plan = self.settings["plan"]
        channels = list(channels or [str(image)])
        description = DatasetDescription.from_dict({**plan, "name": "plan",
                                                    "file_ending": _ending(Path(channels[0]))})
        case = load_nnunet_case(NnunetCase(case_id, tuple(Path(c) for c in channels), label), description)
        if case.label is None:
            raise DataError(f"{image}: case {case_id} has no label")
        x = slices_for_network(normalise(case.image, plan), plan)
        native = to_slices(case.label, plan["slice_axis"])
        spacing = slice_spacing(case.spacing, plan["slice_axis"])
        return _entry(x, resize_label(native, self.settings["size"]), native, spacing)

    def build(self, case_id: str, image: Path, label: Path | None, fingerprint: str,
              channels: Sequence[str] | None = None) -> None:
        arrays = self._arrays(case_id, image, label, channels)
        arrays["fingerprint"] = np.asarray(fingerprint)
        atomic_write_with(self.entry_path(case_id), lambda tmp: np.savez(tmp, **arrays),
                          suffix=".npz")

    def prepare(self, cases: Mapping[str, Mapping[str, str | None]], ids: Iterable[str],
                progress: bool = True) -> PrepareReport:
        """Make sure every case in ``ids`` has a fresh entry; build only what is missing."""
        t0 = time.perf_counter()
        self.folder.mkdir(parents=True, exist_ok=True)
        if folder_kind(self.folder) is None:
            mark_folder(self.folder, "cache")
        settings_file = self.folder / "settings.json"
        if not settings_file.is_file():
            atomic_write_text(settings_file, json.dumps(self.settings, indent=1) + "\n")
        ids = list(ids)
        built = reused = 0
        todo = []
        for cid in ids:
            paths = cases[cid]
            fp = source_fingerprint(paths["image"], paths.get("label"), paths.get("channels"))
            if self.is_fresh(cid, fp):
                reused += 1
            else:
                todo.append((cid, fp))
        bar = tqdm(todo, desc="prepare", unit="case", disable=not progress or not todo, leave=False)
        for cid, fp in bar:
            paths = cases[cid]
            label = paths.get("label")
            self.build(cid, Path(paths["image"]), None if label is None else Path(label), fp,
                       paths.get("channels"))
            built += 1
        return PrepareReport(built, reused, time.perf_counter() - t0, self.folder)

    # ------------------------------------------------------------------ read
    def load(self, case_id: str) -> dict[str, np.ndarray]:
        path = self.entry_path(case_id)
        try:
            with np.load(path) as z:
                shape = tuple(int(v) for v in z["native_shape"])
                if "native_bits" in z.files and int(z["native_bits"]) == 8:
                    native = z["native_label"].reshape(shape)
                else:
                    native = np.unpackbits(z["native_label"], count=int(np.prod(shape))).reshape(shape)
                return {"image": z["image"], "label": z["label"], "native_label": native,
                        "spacing": tuple(float(v) for v in z["spacing"])}
        except FileNotFoundError:
            raise DataError(f"{path}: cache entry missing (run `medseg data prepare`)") from None
        except Exception:
            raise DataError(f"{path}: cache entry unreadable (run `medseg data prepare`)") from None


def prepare(cfg: Mapping[str, Any], split: Mapping[str, Any], progress: bool = True) -> PrepareReport:
    """Build the cache entries for every case of ``split`` under ``cfg['data']`` settings."""
    cache = SliceCache(cfg["data"])
    ids = [c for name in ("train", "val", "test") for c in split[name]]
    return cache.prepare(split["cases"], ids, progress=progress)
