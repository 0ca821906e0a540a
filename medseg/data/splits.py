"""Subsets and splits, drawn with a recorded seed and written as ``split.json``.

* Pancreas-CT (paper protocol): ``num_cases`` scans drawn at random from the
  dataset, then split **by scan** into train/val/test (default 12 → 8/2/2), so
  no scan contributes slices to two sets.
* BAGLS: ``train_frames`` random frames of ``training/`` (default 3000),
  ``val_frames`` drawn from the rest of ``training/``, test = ``test/`` (all of
  it, or a random ``test_frames`` subset).

The split file stores the dataset, root, layout, seed and, for every case id, the
image and label paths, so a run (and every repeat of a grid) reads exactly the
same cases. :func:`load_split` checks the file before anything trusts it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import DataError
from ..io import atomic_write_text

SPLITS = ("train", "val", "test")
VERSION = 1


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))


def make_split(data_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Draw the subset/split described by the ``data`` section of a config."""
    from . import CaseRef, detect_layout, discover_bagls, discover_pancreas  # noqa: F401

    root = Path(data_cfg["root"])
    dataset = data_cfg["dataset"]
    seed = int(data_cfg["split_seed"])
    rng = _rng(seed)
    layout = data_cfg.get("layout", "auto")
    if layout == "auto":
        layout = detect_layout(root, dataset)
    cases: dict[str, dict[str, str | None]] = {}
    out: dict[str, Any] = {"version": VERSION, "dataset": dataset, "root": str(root),
                           "layout": layout, "seed": seed}

    def record(refs):
        for r in refs:
            cases[r.case_id] = {"image": str(r.image), "label": None if r.label is None else str(r.label)}
        return [r.case_id for r in refs]

    if dataset == "pancreas":
        refs = discover_pancreas(root, layout)
        n = int(data_cfg["num_cases"])
        n_train, n_val, n_test = (int(v) for v in data_cfg["split"])
        if len(refs) < n:
            raise DataError(f"{root}: data.num_cases is {n} but only {len(refs)} scans were found")
        chosen = [refs[i] for i in rng.permutation(len(refs))[:n]]
        out["train"] = record(chosen[:n_train])
        out["val"] = record(chosen[n_train:n_train + n_val])
        out["test"] = record(chosen[n_train + n_val:n_train + n_val + n_test])
        out["unused"] = [r.case_id for r in chosen[n_train + n_val + n_test:]]
    elif dataset == "bagls":
        found = discover_bagls(root)
        training, test = found["training"], found["test"]
        n_train, n_val = int(data_cfg["train_frames"]), int(data_cfg["val_frames"])
        if len(training) < n_train + n_val:
            raise DataError(
                f"{root / 'training'}: data.train_frames + data.val_frames = {n_train + n_val} "
                f"but only {len(training)} frames were found"
            )
        order = rng.permutation(len(training))
        out["train"] = record([training[i] for i in order[:n_train]])
        out["val"] = record([training[i] for i in order[n_train:n_train + n_val]])
        n_test = data_cfg.get("test_frames")
        if n_test is not None and n_test < len(test):
            test = [test[i] for i in sorted(rng.permutation(len(test))[:n_test])]
        if not test:
            raise DataError(f"{root / 'test'}: no test frames found")
        out["test"] = record(test)
    else:  # validated by the config already
        raise DataError(f"unknown dataset '{dataset}'")
    out["cases"] = cases
    return out


def save_split(split: Mapping[str, Any], path: str | os.PathLike) -> None:
    atomic_write_text(path, json.dumps(split, indent=1) + "\n")


def load_split(path: str | os.PathLike, dataset: str | None = None) -> dict[str, Any]:
    """Read and check a split file; errors name the file."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: split file not found")
    try:
        split = json.loads(p.read_text())
    except (OSError, ValueError):
        raise DataError(f"{p}: not a valid split file (JSON could not be read)") from None
    if not isinstance(split, dict) or any(k not in split for k in (*SPLITS, "cases", "dataset")):
        raise DataError(f"{p}: not a valid split file (needs train/val/test/cases/dataset)")
    if dataset is not None and split["dataset"] != dataset:
        raise DataError(f"{p}: split is for dataset '{split['dataset']}', config says '{dataset}'")
    for name in SPLITS:
        missing = [c for c in split[name] if c not in split["cases"]]
        if missing:
            raise DataError(f"{p}: case '{missing[0]}' of split '{name}' has no paths")
    seen: dict[str, str] = {}
    for name in SPLITS:
        for c in split[name]:
            if c in seen:
                raise DataError(f"{p}: case '{c}' is in both '{seen[c]}' and '{name}'")
            seen[c] = name
    return split


def resolve_split(data_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The split a run uses: ``data.split_file`` if given, else a fresh draw."""
    if data_cfg.get("split_file"):
        return load_split(data_cfg["split_file"], data_cfg["dataset"])
    return make_split(data_cfg)
