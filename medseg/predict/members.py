"""The networks of a prediction: checkpoints given or taken from an experiment, loaded and checked.

* :func:`method_checkpoints` — the best checkpoint of every run (repeat, fold) of
  one method in an experiment folder, found through its ``results.csv``;
* :func:`load_member` — one checkpoint's network (evaluation mode, on the device)
  and its metadata, refused unless it carries medseg's preprocessing (an nnunet
  dataset's: its plan and labels);
* :func:`check_members` — an ensemble's members share dataset and preprocessing;
* :func:`check_mirroring` — test-time mirroring needs a network trained with mirroring;
* :func:`check_stochastic` — Monte Carlo sampling needs a random regularizer.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from ..errors import CheckpointError, DataError, MedsegError

from ..training.checkpoint import MODALITY as DATASET_MODALITY  # for checkpoints without "modality"


@dataclass
class Member:
    """One network of a prediction."""

    checkpoint: Path
    model: torch.nn.Module
    meta: dict[str, Any]

    @property
    def modality(self) -> str:
        """DICOM Modality of the training images (CT; ES = endoscopy for BAGLS)."""
        return str(self.meta.get("modality") or DATASET_MODALITY[self.meta["preprocessing"]["dataset"]])

    @property
    def method(self) -> str:
        return str((self.meta.get("regularizer") or {}).get("name", "none"))

    @property
    def mirror_axes(self) -> list[str]:
        """The in-plane axes training mirrored (checkpoints before they were recorded:
        x when the run augmented, as medseg always did, else none)."""
        if isinstance(self.meta.get("mirror_axes"), list):
            return [str(a) for a in self.meta["mirror_axes"]]
        data = (self.meta.get("config") or {}).get("data") or {}
        return ["x"] if data.get("augment", True) else []

    @property
    def eval_batch_size(self) -> int:
        return int(((self.meta.get("config") or {}).get("eval") or {}).get("batch_size") or 32)

    def regularizers_train(self, on: bool) -> None:
        """Regularizer modules only into training (``on``) or evaluation mode; the rest stays eval."""
        from ..regularizers import Regularizer

        for module in self.model.modules():
            if isinstance(module, Regularizer):
                module.train(on)


def load_member(checkpoint: Path, device: torch.device) -> Member:
    """The checkpoint's network in evaluation mode on ``device``, and its metadata."""
    from ..training.checkpoint import build_model_from_checkpoint

    model, meta = build_model_from_checkpoint(checkpoint)
    pre = meta.get("preprocessing") if isinstance(meta, dict) else None
    if not isinstance(pre, dict) or pre.get("dataset") not in (*DATASET_MODALITY, "nnunet") \
            or "size" not in pre or (pre["dataset"] == "pancreas" and "window" not in pre):
        raise CheckpointError(f"{checkpoint}: incompatible checkpoint (its preprocessing "
                              "metadata lacks dataset/size/window)")
    if pre["dataset"] == "nnunet":
        problem = _nnunet_problem(pre, meta)
        if problem:
            raise CheckpointError(f"{checkpoint}: damaged medseg metadata ({problem})")
    return Member(checkpoint, model.to(device).eval(), meta)


def _nnunet_problem(pre: dict[str, Any], meta: dict[str, Any]) -> str | None:
    """What an nnunet checkpoint's plan and labels lack for predict (None: complete)."""
    plan = pre.get("plan")
    if not isinstance(plan, dict):
        return "an nnunet checkpoint without 'preprocessing.plan'"
    for key in ("slice_axis", "normalisation", "channels", "size"):
        if key not in plan:
            return f"'preprocessing.plan.{key}' is missing"
    if plan["slice_axis"] not in ("z", "y", "x"):
        return f"'preprocessing.plan.slice_axis' is {plan['slice_axis']!r}"
    if len(plan["normalisation"]) != len(plan["channels"]) or len(plan["channels"]) != pre["channels"]:
        return "the plan's channels, normalisation and the network's input channels differ"
    labels = pre.get("labels")
    if not isinstance(labels, dict) or sorted(int(v) for v in labels.values()) != \
            list(range(int(meta.get("out_channels", 0)))):
        return f"'preprocessing.labels' {labels!r} do not match the {meta.get('out_channels')} output channels"
    return None


def _describe(pre: dict[str, Any], keys: Sequence[str]) -> str:
    return ", ".join(f"{k} {_short(pre.get(k))}" for k in keys)


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _differing(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The keys whose values differ (a plan: its own keys, as plan.<key>)."""
    keys = []
    for k in sorted(set(a) | set(b)):
        if a.get(k) == b.get(k):
            continue
        if k == "plan" and isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
            keys += [f"plan.{sub}" for sub in _differing(a[k], b[k])]
        else:
            keys.append(k)
    return keys


def _lookup(pre: dict[str, Any], key: str) -> Any:
    return pre.get("plan", {}).get(key[5:]) if key.startswith("plan.") else pre.get(key)


def check_members(members: Sequence[Member]) -> None:
    """Every member has the first one's dataset, preprocessing (an nnunet dataset's plan
    included: its normalisation, slice axis, labels) and modality."""
    first = members[0]
    for m in members[1:]:
        if m.meta["preprocessing"] != first.meta["preprocessing"] or m.modality != first.modality:
            a, b = m.meta["preprocessing"], first.meta["preprocessing"]
            keys = _differing(a, b)
            if m.modality != first.modality:
                a, b = {**a, "modality": m.modality}, {**b, "modality": first.modality}
                keys.append("modality")
            show_a = {k: _lookup(a, k) for k in keys}
            show_b = {k: _lookup(b, k) for k in keys}
            raise CheckpointError(
                f"{m.checkpoint}: preprocessing ({_describe(show_a, keys)}) differs from "
                f"that of {first.checkpoint} ({_describe(show_b, keys)}); ensemble "
                "members must share dataset and preprocessing")


def check_mirroring(members: Sequence[Member]) -> None:
    """Test-time mirroring is refused for a member whose training mirrored nothing."""
    for m in members:
        if not m.mirror_axes:
            raise MedsegError(f"--tta: {m.checkpoint} was trained without mirroring (data.mirror_axes "
                              "empty or data.augment false); mirrored inputs are views it never saw")
        if any(a not in ("x", "y") for a in m.mirror_axes):
            raise CheckpointError(f"{m.checkpoint}: damaged medseg metadata (mirror_axes "
                                  f"{m.mirror_axes!r})")


def check_stochastic(members: Sequence[Member]) -> None:
    """Monte Carlo sampling is refused for a member whose regularizer draws no random numbers."""
    from ..regularizers import registry

    for m in members:
        if not getattr(registry.get(m.method), "stochastic", False):
            raise MedsegError(f"--mc-samples: {m.checkpoint} was trained with '{m.method}', which "
                              "is deterministic; Monte Carlo sampling needs a random regularizer "
                              "(e.g. dropout, dropblock)")


# --------------------------------------------------------------------------- experiments


def _method_names(row: dict[str, Any]) -> set[str]:
    """``heuristic (k=3)`` as reports print it, and ``heuristic_k=3`` as run folders spell it."""
    from ..experiments.grid import _slug, method_label

    params = row["params"]
    parsed = json.loads(params) if isinstance(params, str) and params.strip() else (params or {})
    return {method_label(row["regularizer"], parsed), _slug(row["regularizer"], parsed)}


def _scoped(key: str) -> tuple[str | None, str | None, str]:
    """``METHOD``, ``MODEL/METHOD`` or ``DATASET/MODEL/METHOD`` → (dataset, model, method)."""
    parts = key.split("/")
    if len(parts) >= 3:
        return parts[0], parts[1], "/".join(parts[2:])
    if len(parts) == 2:
        return None, parts[0], parts[1]
    return None, None, key


def method_checkpoints(experiment: str | os.PathLike, method: str) -> list[Path]:
    """Best checkpoint of every run of ``method`` in the experiment folder, in run-folder order."""
    from ..experiments.results import FILENAME, read_results

    exp = Path(experiment)
    if not (exp / FILENAME).is_file():
        raise DataError(f"{exp}: not an experiment folder (no {FILENAME}; run `medseg experiment`)")
    rows = read_results(exp / FILENAME)
    dataset, model, name = _scoped(method)
    mine = [r for r in rows if name in _method_names(r)
            and dataset in (None, r["dataset"]) and model in (None, r["model"])]
    if not mine:
        known = sorted({min(_method_names(r), key=len) for r in rows})
        raise DataError(f"{exp}: no runs of method '{method}' in {FILENAME} "
                        f"(methods: {', '.join(known) or 'none yet'})")
    groups = sorted({f"{r['dataset']}/{r['model']}" for r in mine})
    if len(groups) > 1:
        raise DataError(f"--method {method}: {exp} has runs of it for {', '.join(groups)}; "
                        f"name one, e.g. --method {groups[0]}/{name}")
    checkpoints = [exp / run_dir / "checkpoints" / "best.ckpt"
                   for run_dir in sorted({r["run_dir"] for r in mine})]
    for c in checkpoints:
        if not c.is_file():
            raise CheckpointError(f"{c}: checkpoint not found (a run of '{method}' in {exp})")
    return checkpoints
