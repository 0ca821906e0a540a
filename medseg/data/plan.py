"""The dataset fingerprint and the plan derived from it, as nnU-Net plans a dataset.

``medseg data plan ROOT`` (and ``data prepare``, and every run on an ``nnunet`` dataset)
reads every training case once and writes

* ``fingerprint.json``: per case spacing and size (after reorientation, (z, y, x)),
  per channel the foreground intensity statistics (mean, std, 0.5 and 99.5
  percentiles, min, max) over voxels sampled from the labelled foreground (up to
  :data:`SAMPLES_PER_CASE` per case, seeded), and per label its share of all voxels;
* ``plan.json``: what training and ``medseg predict`` do with a case —

  * ``slice_axis``: the coarsest axis of the median spacing (``z`` unless another
    axis is strictly coarser): 2D networks see slices across it;
  * ``normalisation`` per channel, chosen by ``channel_names`` as nnU-Net does: a
    channel named ``CT`` is clipped to the foreground 0.5–99.5 percentiles, then
    z-scored with the foreground mean and std (dataset-wide, from the fingerprint);
    any other channel is z-scored per image (its own mean and std);
  * ``size``: every slice is resized to ``data.size`` (H, W); ``median_spacing``
    records the in-plane spacing that corresponds to.

The plan travels in the cache key (a change rebuilds), the run folder and the
checkpoint, so ``medseg predict`` normalises a new scan exactly as training did.
Like nnU-Net, the fingerprint covers every labelled case of ``imagesTr`` (test cases
of a split included): intensity statistics only, never labels of the test cases
enter training.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .nnunet import DatasetDescription, VolumeCase

#: foreground voxels sampled per case and channel for the intensity statistics
SAMPLES_PER_CASE = 10_000
PLAN_VERSION = 1
AXES = ("z", "y", "x")


def _intensity_stats(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {"mean": 0.0, "std": 1.0, "percentile_00_5": 0.0, "percentile_99_5": 0.0,
                "min": 0.0, "max": 0.0, "voxels": 0}
    v = values.astype(np.float64)
    return {"mean": float(v.mean()), "std": float(v.std()),
            "percentile_00_5": float(np.percentile(v, 0.5)), "percentile_99_5": float(np.percentile(v, 99.5)),
            "min": float(v.min()), "max": float(v.max()), "voxels": int(v.size)}


def fingerprint(cases: Iterable[VolumeCase], description: DatasetDescription, seed: int = 0) -> dict[str, Any]:
    """Spacings, sizes, foreground intensity statistics per channel, label shares."""
    rng = np.random.default_rng(seed)
    spacings, sizes, ids = [], [], []
    samples: list[list[np.ndarray]] = [[] for _ in description.channels]
    counts = np.zeros(len(description.labels), dtype=np.int64)
    total = 0
    for case in cases:
        ids.append(case.case_id)
        spacings.append([float(s) for s in case.spacing])
        sizes.append([int(v) for v in case.image.shape[1:]])
        if case.label is None:
            continue
        counts += np.bincount(case.label.ravel(), minlength=len(counts))[: len(counts)]
        total += case.label.size
        fg = np.flatnonzero(case.label.ravel() > 0)
        pick = fg if fg.size <= SAMPLES_PER_CASE else rng.choice(fg, SAMPLES_PER_CASE, replace=False)
        for c in range(len(description.channels)):
            samples[c].append(case.image[c].ravel()[pick])
    shares = {name: (float(counts[v]) / total if total else 0.0) for name, v in description.labels.items()}
    return {
        "version": PLAN_VERSION,
        "dataset": description.to_dict(),
        "cases": ids,
        "spacings": spacings,
        "sizes": sizes,
        "foreground_intensities": {
            str(c): {"name": name, **_intensity_stats(np.concatenate(samples[c]) if samples[c] else np.zeros(0))}
            for c, name in enumerate(description.channels)},
        "label_shares": shares,
    }


def _slice_axis(median_spacing: Sequence[float]) -> str:
    """The coarsest axis; ``z`` unless another is strictly coarser (by more than 1 %)."""
    z = median_spacing[0]
    coarsest = int(np.argmax(median_spacing))
    return "z" if median_spacing[coarsest] <= z * 1.01 else AXES[coarsest]


def make_plan(fp: Mapping[str, Any], size: Sequence[int]) -> dict[str, Any]:
    """The plan of a fingerprint: slice axis, normalisation per channel, slice size."""
    median = [float(v) for v in np.median(np.asarray(fp["spacings"], dtype=np.float64), axis=0)]
    axis = _slice_axis(median)
    in_plane = [median[i] for i in range(3) if AXES[i] != axis]
    norm = []
    for c in sorted(fp["foreground_intensities"], key=int):
        st = fp["foreground_intensities"][c]
        if st["name"].strip().lower() == "ct":
            norm.append({"channel": st["name"], "scheme": "ct",
                         "clip": [st["percentile_00_5"], st["percentile_99_5"]],
                         "mean": st["mean"], "std": max(st["std"], 1e-8)})
        else:
            norm.append({"channel": st["name"], "scheme": "zscore"})
    return {"version": PLAN_VERSION, "slice_axis": axis, "median_spacing": median,
            "median_spacing_in_plane": in_plane, "size": [int(v) for v in size],
            "normalisation": norm, "labels": dict(fp["dataset"]["labels"]),
            "channels": list(fp["dataset"]["channels"])}


def normalise(image: np.ndarray, plan: Mapping[str, Any]) -> np.ndarray:
    """(C, Z, Y, X) raw intensities → float32 normalised per channel as ``plan`` says."""
    out = np.empty(image.shape, dtype=np.float32)
    for c, scheme in enumerate(plan["normalisation"]):
        x = image[c].astype(np.float32, copy=False)
        if scheme["scheme"] == "ct":
            lo, hi = scheme["clip"]
            out[c] = (np.clip(x, lo, hi) - scheme["mean"]) / scheme["std"]
        else:
            std = float(x.std())
            out[c] = (x - float(x.mean())) / max(std, 1e-8)
    return out


def to_slices(array: np.ndarray, axis: str) -> np.ndarray:
    """(…, Z, Y, X) → (…, N, H, W) with the slice axis first of the spatial ones."""
    lead = array.ndim - 3
    i = lead + AXES.index(axis)
    rest = [lead + k for k in range(3) if lead + k != i]
    return np.ascontiguousarray(array.transpose(list(range(lead)) + [i] + rest))


def from_slices(array: np.ndarray, axis: str) -> np.ndarray:
    """The inverse of :func:`to_slices`."""
    lead = array.ndim - 3
    k = AXES.index(axis)
    order = list(range(lead))
    spatial = [lead + 1, lead + 2]
    spatial.insert(k, lead)
    return np.ascontiguousarray(array.transpose(order + spatial))


# ----------------------------------------------------------------------------- on disk
def _source_hash(files: Sequence[Path]) -> str:
    """Paths, sizes and modification times of the files a fingerprint was taken from."""
    import hashlib
    import json

    items = []
    for f in files:
        st = Path(f).stat()
        items.append((str(Path(f).resolve()), st.st_size, st.st_mtime_ns))
    return hashlib.sha1(json.dumps(items).encode()).hexdigest()


def plan_dataset(root: str | os.PathLike, size: Sequence[int], folder: str | os.PathLike, *,
                 progress: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """The fingerprint and plan of the nnU-Net dataset at ``root``, kept in ``folder``.

    ``folder/fingerprint.json`` is reused while dataset.json and the case files are
    unchanged (paths, sizes, modification times); ``plan.json`` is written next to it.
    Both are written atomically. Every case is read (and checked) once.
    """
    from .nnunet import discover_nnunet, load_nnunet_case, read_description

    root = Path(root)
    _check_plan_folder(Path(folder), root)
    description = read_description(root)
    cases = discover_nnunet(root, description)
    files = [root / "dataset.json"] + [p for c in cases for p in (*c.channels, c.label) if p is not None]
    return _planned(Path(folder), description, files, (lambda: (load_nnunet_case(c, description) for c in cases)),
                    len(cases), size, str(root), progress)


def _planned(folder: Path, description: DatasetDescription, files: Sequence[Path], cases,
             count: int, size: Sequence[int], root: str,
             progress: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fingerprint ``cases()`` (reusing ``folder/fingerprint.json`` while ``files`` are
    unchanged) and write the plan next to it."""
    import json

    from tqdm.auto import tqdm

    from ..io import atomic_write_text, folder_kind, mark_folder

    source = _source_hash(files)
    fp_path = folder / "fingerprint.json"
    fp = None
    if fp_path.is_file():
        try:
            fp = json.loads(fp_path.read_text())
        except (OSError, ValueError):
            fp = None
        if not isinstance(fp, dict) or fp.get("source") != source or fp.get("version") != PLAN_VERSION:
            fp = None
    if fp is None:
        bar = tqdm(cases(), total=count, desc="fingerprint", unit="case", disable=not progress or None,
                   leave=False)
        fp = fingerprint(bar, description)
        fp["source"] = source
        fp["root"] = root
        folder.mkdir(parents=True, exist_ok=True)
        if folder_kind(folder) != "plan":
            mark_folder(folder, "plan")
        atomic_write_text(fp_path, json.dumps(fp, indent=1) + "\n")
    plan = make_plan(fp, size)
    text = json.dumps(plan, indent=1) + "\n"
    plan_path = folder / "plan.json"
    if not plan_path.is_file() or plan_path.read_text() != text:
        atomic_write_text(plan_path, text)
    return fp, plan


def _check_plan_folder(folder: Path, root: Path) -> None:
    """The plan is written only into a new or empty folder, or one ``data plan`` made (its
    marker, or nothing but its own two files); never into the dataset itself."""
    from ..errors import DataError
    from ..io import folder_kind

    if folder.exists() and not folder.is_dir():
        raise DataError(f"{folder}: exists and is not a folder")
    if root.exists() and folder.exists() and folder.resolve() == root.resolve():
        raise DataError(f"{folder}: is the dataset folder; the plan is written elsewhere (nothing "
                        "is written into a dataset)")
    if folder.is_dir() and folder_kind(folder) != "plan" and not _earlier_plan_files(folder):
        raise DataError(f"{folder}: folder exists and was not made by 'medseg data plan'; "
                        "give a new or empty folder")


def _earlier_plan_files(folder: Path) -> bool:
    """An empty folder, or one holding only medseg's own fingerprint.json / plan.json (written
    before plan folders were marked)."""
    import json

    names = {p.name for p in folder.iterdir() if not p.name.startswith(".")}
    if not names:
        return True
    if not names <= {"fingerprint.json", "plan.json"} or "fingerprint.json" not in names:
        return False
    try:
        fp = json.loads((folder / "fingerprint.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(fp, dict) and {"version", "source", "foreground_intensities"} <= set(fp)


def plan_folder_of(data_cfg: Mapping[str, Any]) -> Path:
    """Where a config's dataset fingerprint and plan live: under ``data.cache_dir``, one
    folder per dataset root (and, for the built-in datasets, what decides their cases)."""
    import hashlib

    root = Path(data_cfg["root"]).resolve()
    key = [str(root)]
    if data_cfg["dataset"] != "nnunet":
        key += [data_cfg["dataset"], str(data_cfg.get("layout")), str(data_cfg.get("merge_tumour")),
                str(data_cfg.get("channels"))]
    tag = hashlib.sha1("|".join(key).encode()).hexdigest()[:8]
    return Path(data_cfg["cache_dir"]) / "plans" / f"{root.name}-{tag}"


def uses_plan(data_cfg: Mapping[str, Any]) -> bool:
    """Whether a config's cases are normalised by the fingerprint's plan: always for an
    ``nnunet`` dataset; Pancreas-CT and BAGLS with ``data.normalisation: plan``."""
    return data_cfg["dataset"] == "nnunet" or data_cfg.get("normalisation", "auto") == "plan"


def dataset_plan(data_cfg: Mapping[str, Any], progress: bool = False) -> dict[str, Any]:
    """The plan of a config's dataset (computed once, then read from the cache)."""
    if data_cfg["dataset"] == "nnunet":
        return plan_dataset(data_cfg["root"], data_cfg["size"], plan_folder_of(data_cfg), progress=progress)[1]
    from .nnunet import describe_dataset

    files, cases, count = builtin_cases(data_cfg)
    folder = plan_folder_of(data_cfg)
    _check_plan_folder(folder, Path(data_cfg["root"]))
    return _planned(folder, describe_dataset(data_cfg), files, cases, count,
                    data_cfg["size"], str(data_cfg["root"]), progress)[1]


#: BAGLS frames fingerprinted at most (evenly spaced over training/; frames are z-scored per
#: image, so only the spacing, sizes and label shares come from them)
MAX_FRAMES = 1000


def builtin_cases(data_cfg: Mapping[str, Any]):
    """``(files, cases, count)``: the labelled cases of Pancreas-CT (every scan) or BAGLS
    (training/, at most :data:`MAX_FRAMES`) as a generator function of :class:`VolumeCase`
    (raw intensities: HU; frames in [0, 1] with ``data.channels``), the files they come
    from and how many there are."""
    from .bagls import load_bagls_frame, mask_path_for
    from .discovery import discover_bagls, discover_pancreas
    from .pancreas import load_pancreas_case
    from .preprocess import frame_to_channels

    if data_cfg["dataset"] == "pancreas":
        refs = discover_pancreas(data_cfg["root"], data_cfg.get("layout", "auto"))
        files = [f for r in refs for f in ([r.image] if r.image.is_file() else sorted(r.image.rglob("*")))
                 + [r.label] if Path(f).is_file()]

        def cases():
            for r in refs:
                c = load_pancreas_case(r.image, r.label, merge_tumour=data_cfg.get("merge_tumour", True),
                                       case_id=r.case_id)
                yield VolumeCase(c.case_id, c.image[None], c.label, c.geometry, c.geometry)
        return files, cases, len(refs)
    frames = discover_bagls(data_cfg["root"])["training"]
    step = max(1, -(-len(frames) // MAX_FRAMES))
    frames = frames[::step]
    files = [f for r in frames for f in (r.image, mask_path_for(r.image)) if f.is_file()]

    def frame_cases():
        from .geometry import Geometry

        for r in frames:
            f = load_bagls_frame(r.image)
            x = frame_to_channels(f.image, int(data_cfg.get("channels", 1)))[:, None]
            h, w = f.mask.shape
            g = Geometry((0, 0, 0), (1, 1, 1), (1, 0, 0, 0, 1, 0, 0, 0, 1), (w, h, 1))
            yield VolumeCase(r.case_id, x, f.mask[None], g, g)
    return files, frame_cases, len(frames)


def slice_spacing(spacing: Sequence[float], axis: str) -> tuple[float, float, float]:
    """(z, y, x) voxel size in the order of :func:`to_slices`' axes (slice axis first)."""
    i = AXES.index(axis)
    return (float(spacing[i]), *(float(spacing[k]) for k in range(3) if k != i))


def slices_for_network(image: np.ndarray, plan: Mapping[str, Any]):
    """Normalised (C, Z, Y, X) → (N, C, H, W) float32 tensor: slices across the plan's axis,
    each resized to the plan's size (bilinear with anti-aliasing, as the built-in datasets)."""
    import torch

    from .preprocess import _resize

    s = to_slices(image, plan["slice_axis"])          # (C, N, H', W')
    c, n = s.shape[:2]
    x = torch.from_numpy(np.ascontiguousarray(s.transpose(1, 0, 2, 3))).reshape(n * c, *s.shape[2:])
    x = _resize(x, plan["size"], "bilinear")
    return x.reshape(n, c, *x.shape[-2:]).contiguous()
