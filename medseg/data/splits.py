"""Subsets and splits, drawn with a recorded seed and written as ``split.json``.

* Pancreas-CT (paper protocol): ``num_cases`` scans drawn at random from the
  dataset, then split **by scan** into train/val/test (default 12 → 8/2/2), so
  no scan contributes slices to two sets.
* BAGLS: ``train_frames`` random frames of ``training/`` (default 3000),
  ``val_frames`` drawn from the rest of ``training/``, test = ``test/`` (all of
  it, or a random ``test_frames`` subset).

With ``data.folds`` K > 1 (Pancreas-CT) all ``num_cases`` selected scans are also
split into K seeded cross-validation folds (:func:`make_folds`), stored under
``folds``; a run of fold f (``data.fold``) trains, validates and tests on that
fold's lists (:func:`resolve_split`), and its own ``split.json`` holds just those.

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


def _nnunet_refs(root: Path) -> list:
    """The labelled cases of an nnU-Net dataset as :class:`CaseRef` (first channel as image)."""
    from . import CaseRef
    from .nnunet import discover_nnunet

    return [CaseRef(c.case_id, c.channels[0], c.label, c.channels) for c in discover_nnunet(root)]


def make_split(data_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Draw the subset/split described by the ``data`` section of a config."""
    from . import CaseRef, detect_layout, discover_bagls, discover_pancreas  # noqa: F401

    root = Path(data_cfg["root"])
    dataset = data_cfg["dataset"]
    seed = int(data_cfg["split_seed"])
    rng = _rng(seed)
    layout = data_cfg.get("layout", "auto")
    if layout == "auto":
        layout = "nnunet" if dataset == "nnunet" else detect_layout(root, dataset)
    cases: dict[str, dict[str, str | None]] = {}
    out: dict[str, Any] = {"version": VERSION, "dataset": dataset, "root": str(root),
                           "layout": layout, "seed": seed}

    def record(refs):
        for r in refs:
            cases[r.case_id] = {"image": str(r.image), "label": None if r.label is None else str(r.label)}
            if r.channels:
                cases[r.case_id]["channels"] = [str(c) for c in r.channels]
        return [r.case_id for r in refs]

    if dataset in ("pancreas", "nnunet"):
        refs = discover_pancreas(root, layout) if dataset == "pancreas" else _nnunet_refs(root)
        n = int(data_cfg["num_cases"])
        n_train, n_val, n_test = (int(v) for v in data_cfg["split"])
        if len(refs) < n:
            raise DataError(f"{root}: data.num_cases is {n} but only {len(refs)} scans were found")
        chosen = [refs[i] for i in rng.permutation(len(refs))[:n]]
        out["train"] = record(chosen[:n_train])
        out["val"] = record(chosen[n_train:n_train + n_val])
        out["test"] = record(chosen[n_train + n_val:n_train + n_val + n_test])
        out["unused"] = [r.case_id for r in chosen[n_train + n_val + n_test:]]
        if int(data_cfg.get("folds", 1)) > 1:
            record(chosen)
            out["folds"] = make_folds([r.case_id for r in chosen], int(data_cfg["folds"]), n_val, seed)
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


def make_folds(case_ids: list[str], k: int, n_val: int, seed: int) -> list[dict[str, list[str]]]:
    """Cross-validation over scans: ``k`` seeded test folds (sizes differ by at most 1).

    Fold ``f`` tests its own scans; ``n_val`` validation scans are drawn (seeded
    by ``(seed, k, f)``) from the others and the rest train. Every scan is a test
    case in exactly one fold.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xF01D, k]))
    tests = np.array_split(rng.permutation(len(case_ids)), k)
    folds = []
    for f, test_idx in enumerate(tests):
        test = {int(i) for i in test_idx}
        rest = [i for i in range(len(case_ids)) if i not in test]
        fold_rng = np.random.default_rng(np.random.SeedSequence([seed, 0xF01D, k, f]))
        val = {rest[int(j)] for j in fold_rng.permutation(len(rest))[:n_val]}
        folds.append({"train": [case_ids[i] for i in rest if i not in val],
                      "val": [case_ids[i] for i in sorted(val)],
                      "test": [case_ids[i] for i in sorted(test)]})
    return folds


def select_fold(split: Mapping[str, Any], fold: int, k: int, where: str = "split") -> dict[str, Any]:
    """The split of cross-validation fold ``fold`` of ``k`` (train/val/test replaced)."""
    folds = split.get("folds") or []
    if len(folds) != k:
        raise DataError(f"{where}: has {len(folds)} cross-validation folds, the config asks for "
                        f"data.folds = {k} (draw a new split file)")
    out = {key: v for key, v in split.items() if key != "folds"}
    out.update({name: list(folds[fold][name]) for name in SPLITS}, fold=fold, num_folds=k)
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
    for views in ([split], split.get("folds") or []):
        for view in views:
            _check_disjoint(p, view, split["cases"])
    if split.get("folds"):
        tests = [c for fold in split["folds"] for c in fold["test"]]
        if len(tests) != len(set(tests)):
            raise DataError(f"{p}: a case is a test case in two cross-validation folds")
    return split


def _check_disjoint(p: Path, view: Mapping[str, Any], cases: Mapping[str, Any]) -> None:
    seen: dict[str, str] = {}
    for name in SPLITS:
        if not isinstance(view.get(name), list):
            raise DataError(f"{p}: not a valid split file ('{name}' is not a list of cases)")
        for c in view[name]:
            if c not in cases:
                raise DataError(f"{p}: case '{c}' of split '{name}' has no paths")
            if c in seen:
                raise DataError(f"{p}: case '{c}' is in both '{seen[c]}' and '{name}'")
            seen[c] = name


def full_split(data_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``data.split_file`` if given, else a fresh draw — with all its folds."""
    if data_cfg.get("split_file"):
        return load_split(data_cfg["split_file"], data_cfg["dataset"])
    return make_split(data_cfg)


def train_subset(train: list[str], size: int, seed: int, fold: int = 0) -> list[str]:
    """The first ``size`` of a seeded permutation of the training cases (in their split order).

    The permutation depends only on the cases, ``seed`` (``data.split_seed``) and the fold,
    so the subsets of one split are nested: the 2 cases of size 2 are among the 4 of size 4.
    """
    if size > len(train):
        raise DataError(f"data.train_size is {size} but the split has {len(train)} training cases")
    order = np.random.default_rng(np.random.SeedSequence([seed, 0x517E, fold])).permutation(len(train))
    return [train[i] for i in order[:size]]


def narrow_split(split: Mapping[str, Any], data_cfg: Mapping[str, Any], where: str = "split") -> dict[str, Any]:
    """A full split narrowed to what one run uses: its fold when ``data.folds`` > 1, and its
    ``data.train_size`` training cases (:func:`train_subset`) when that is set."""
    k = int(data_cfg.get("folds", 1))
    out = select_fold(split, int(data_cfg["fold"]), k, where) if k > 1 else dict(split)
    size = data_cfg.get("train_size")
    if size is None:
        return out
    seed = int(out.get("seed", data_cfg["split_seed"]))  # the seed the split was drawn with
    subset = train_subset(list(out["train"]), int(size), seed, int(data_cfg.get("fold", 0)))
    return {**out, "train": subset, "train_size": int(size)}


def resolve_split(data_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The split a run uses: :func:`full_split`, narrowed by :func:`narrow_split`."""
    return narrow_split(full_split(data_cfg), data_cfg, data_cfg.get("split_file") or "split")
