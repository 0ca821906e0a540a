"""Checkpoints that are safe to open and carry their own preprocessing.

A medseg checkpoint is a Lightning checkpoint with one extra entry, ``"medseg"``,
holding plain data only (str, int, float, bool, lists, dicts): the resolved run
config, the preprocessing (dataset, window, size, channels, the orientation volumes
were sliced in), the axes training mirrored (``mirror_axes``: what ``--tta`` may
use), and the model settings. Checkpoints from elsewhere are untrusted: they are always opened with
``torch.load(..., weights_only=True)``, which refuses pickles that would run code.

Saving (:class:`AtomicCheckpointIO`, the Trainer's ``CheckpointIO`` plugin): the
checkpoint is serialised to a temporary file *in the checkpoint's own folder*,
``fsync``-ed, renamed onto its name and the folder ``fsync``-ed — so ``kill -9``,
a power cut or a full disk at any moment leaves the previous complete file under
the final name, never a truncated one. (Lightning's default stages the file in the
system temporary folder and *copies* it into place when that is another file
system, which is not atomic.)

Resuming (:func:`newest_complete_checkpoint`): of ``last.ckpt`` and ``best.ckpt``
the one with the highest (epoch, step) that opens, carries the full training
state and fits the run's model is used; the others are reported as skipped.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
from pathlib import Path
from typing import Any, Mapping

import torch

from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from ..errors import CheckpointError
from ..io import atomic_write_bytes

FORMAT = 1
#: DICOM Modality of each built-in dataset's images, recorded in every checkpoint (``medseg
#: predict`` refuses other modalities): CT for Pancreas-CT; ES (endoscopy, DICOM CID 29) for
#: the laryngeal high-speed videoendoscopy frames of BAGLS; an nnunet dataset's from its
#: channel names (:attr:`medseg.data.nnunet.DatasetDescription.modality`)
MODALITY = {"pancreas": "CT", "bagls": "ES"}


def plain(obj: Any) -> Any:
    """A JSON round trip: guarantees the object is plain data (weights_only-loadable)."""
    return json.loads(json.dumps(obj))


def medseg_metadata(cfg: Mapping[str, Any]) -> dict[str, Any]:
    data = cfg["data"]
    from ..data.nnunet import describe_dataset
    from ..data.orientation import TRAINING_ORIENTATION
    from ..data.plan import dataset_plan, uses_plan
    from ..data.transforms import mirror_axes_trained

    description = describe_dataset(data)
    pre = {"dataset": data["dataset"], "size": list(data["size"]), "channels": in_channels(cfg)}
    if data["dataset"] == "pancreas":
        pre["window"] = list(data["window"])
        pre["orientation"] = TRAINING_ORIENTATION
    if data["dataset"] == "nnunet":
        pre["orientation"] = TRAINING_ORIENTATION
        pre["file_ending"] = description.file_ending  # 2D frames or 3D volumes
    if uses_plan(data):  # how predict must normalise and slice a new case
        pre["plan"] = dataset_plan(data)
    if len(description.foreground) > 1 or data["dataset"] == "nnunet":
        pre["labels"] = description.to_dict()["labels"]  # what the output channels mean
    return plain({
        "format": FORMAT,
        "preprocessing": pre,
        "modality": description.modality,
        # what test-time mirroring may use: the axes training mirrored ([] without augmentation)
        "mirror_axes": mirror_axes_trained(data),
        # foreground_prior only initialises the heads: not part of what the weights mean
        "model": {k: v for k, v in cfg["model"].items() if k != "foreground_prior"},
        "regularizer": dict(cfg["regularizer"]),
        "out_channels": description.num_classes,
        "config": dict(cfg),
    })


def in_channels(cfg: Mapping[str, Any]) -> int:
    """Network input channels: the dataset's channels (Pancreas-CT 1, BAGLS data.channels,
    nnunet its dataset.json's channel_names)."""
    from ..data.nnunet import describe_dataset

    return len(describe_dataset(cfg["data"]).channels)


def out_channels(cfg: Mapping[str, Any]) -> int:
    """Network output channels: background + one per foreground label."""
    from ..data.nnunet import describe_dataset

    return describe_dataset(cfg["data"]).num_classes


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Open a checkpoint safely; return ``{"medseg": meta, "state_dict": weights}``."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint not found")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message suggests weights_only=False, which is exactly what must not be
        # done with an untrusted file; quote only the line naming the offending global
        found = re.search(r"[Uu]nsupported (?:GLOBAL|global)[^\n.]*", str(exc))
        what = f": {found.group(0).strip()}" if found else ""
        raise CheckpointError(
            f"{p}: refused to load: the file holds objects other than tensors and plain data, "
            f"which could run code (opened with weights_only=True){what}"
        ) from None
    except Exception as exc:  # truncated zip, not a torch file, ...
        raise CheckpointError(f"{p}: not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{p}: not a medseg checkpoint (no state_dict)")
    meta = ckpt.get("medseg")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{p}: not a medseg checkpoint (missing or unknown 'medseg' metadata)")
    problem = metadata_problem(meta)
    if problem is not None:
        raise CheckpointError(f"{p}: damaged medseg metadata ({problem})")
    problem = weights_not_finite(ckpt["state_dict"])
    if problem is not None:
        raise CheckpointError(f"{p}: refused to load: {problem}")
    return {"medseg": meta, "state_dict": ckpt["state_dict"], "epoch": ckpt.get("epoch")}


def weights_not_finite(state_dict: Any) -> str | None:
    """Why a checkpoint's ``state_dict`` cannot hold trained weights (None: it can): an entry
    that is not a tensor, or a floating-point tensor with NaN or infinite values (a diverged
    or damaged training gives NaN maps, never a segmentation)."""
    if not isinstance(state_dict, Mapping):
        return "its state_dict is not a mapping of tensors"
    for name, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            return f"state_dict entry '{name}' is not a tensor"
        if value.is_floating_point() or value.is_complex():
            bad = int(value.numel() - torch.isfinite(value).sum())
            if bad:
                return f"weight '{name}' holds {bad} NaN/infinite value(s)"
    return None


#: what the metadata must hold: section → {key: accepted types}
_METADATA = {
    "preprocessing": {"dataset": (str,), "size": (list,), "channels": (int,)},
    "model": {"name": (str,), "base_channels": (int,), "depth": (int,), "norm": (str,)},
    "regularizer": {"name": (str,)},
}


def metadata_problem(meta: Mapping[str, Any]) -> str | None:
    """What is missing or mistyped in a checkpoint's medseg metadata (None: complete)."""
    for section, keys in _METADATA.items():
        part = meta.get(section)
        if not isinstance(part, dict):
            return f"no '{section}' section"
        for key, types in keys.items():
            if not isinstance(part.get(key), types) or isinstance(part.get(key), bool):
                return f"'{section}.{key}' is missing or not a {types[0].__name__}"
    size = meta["preprocessing"]["size"]
    if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
        return f"'preprocessing.size' must be two positive integers, got {size!r}"
    if meta["preprocessing"]["dataset"] == "pancreas" and not (
            isinstance(meta["preprocessing"].get("window"), list) and len(meta["preprocessing"]["window"]) == 2):
        return "'preprocessing.window' is missing"
    window = meta["preprocessing"].get("window")
    if window is not None and not _window_ok(window):
        return f"'preprocessing.window' must be two finite numbers, low < high, got {window!r}"
    if not isinstance(meta.get("out_channels"), int) or isinstance(meta.get("out_channels"), bool):
        return "'out_channels' is missing or not an int"
    for name, value in (("preprocessing.channels", meta["preprocessing"]["channels"]),
                        ("out_channels", meta["out_channels"]), ("model.base_channels", meta["model"]["base_channels"]),
                        ("model.depth", meta["model"]["depth"])):
        if value < 1:
            return f"'{name}' must be >= 1, got {value}"
    return None


def _window_ok(window: Any) -> bool:
    """Two finite real numbers, low < high (a window no trained checkpoint can hold otherwise)."""
    import math

    if not isinstance(window, list) or len(window) != 2:
        return False
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in window):
        return False
    return all(math.isfinite(v) for v in window) and window[0] < window[1]


def build_model_from_checkpoint(path: str | os.PathLike):
    """Rebuild the network of a checkpoint and load its weights; returns (model, meta)."""
    from ..models import build

    ckpt = load_checkpoint(path)
    meta = ckpt["medseg"]
    m = meta["model"]
    try:
        model = build(m["name"], meta["preprocessing"]["channels"], meta["out_channels"],
                      base_channels=m["base_channels"], depth=m["depth"], norm=m["norm"],
                      regularizer=meta["regularizer"], **_model_options(m))
        weights = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
        model.load_state_dict(weights, strict=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: incompatible checkpoint ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:200]})") from None
    model.eval()
    return model, meta


def _model_options(model_cfg: Mapping[str, Any]) -> dict[str, Any]:
    if model_cfg["name"] != "unet3plus":
        return {}
    return {"deep_supervision": model_cfg.get("deep_supervision", False),
            "cat_channels": model_cfg.get("cat_channels")}


# ----------------------------------------------------------------------------- saving
class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO`` with an atomic save on the checkpoint's own file
    system (temporary file in the same folder, fsync, ``os.replace``, fsync of the folder)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options")
        buffer = io.BytesIO()  # serialise first: torch's writer reports a full disk as RuntimeError
        torch.save(checkpoint, buffer)
        atomic_write_bytes(path, buffer.getbuffer())  # checked to the byte before the rename


def remove_partial_saves(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of saves that were killed (``.NAME.ckpt.*.tmp``)."""
    gone = []
    for tmp in Path(folder).glob(".*.ckpt.*.tmp"):
        tmp.unlink(missing_ok=True)
        gone.append(tmp)
    return gone


# ----------------------------------------------------------------------------- resuming
#: the entries Lightning needs to continue training from a checkpoint
TRAINING_STATE = ("state_dict", "optimizer_states", "loops", "epoch", "global_step")


def _resume_candidate(path: Path, cfg: Mapping[str, Any]) -> tuple[tuple[int, int], str | None]:
    """((epoch, step), None) for a checkpoint training can continue from, else (…, why not)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated, empty, not a torch file, unsafe
        return (-1, -1), f"unreadable ({type(exc).__name__})"
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in TRAINING_STATE):
        return (-1, -1), "incomplete (no training state)"
    problem = compatibility_problem(ckpt.get("medseg"), cfg, ("preprocessing", "model", "regularizer"))
    if problem is None:
        problem = weights_not_finite(ckpt["state_dict"])
    if problem is None:
        problem = _weights_problem(ckpt["state_dict"], cfg)
    return (int(ckpt["epoch"]), int(ckpt["global_step"])), problem


def _weights_problem(state_dict: Mapping[str, Any], cfg: Mapping[str, Any]) -> str | None:
    from .module import SegmentationModule

    try:
        SegmentationModule(dict(cfg)).load_state_dict(state_dict, strict=True)
    except Exception as exc:  # noqa: BLE001 - shape or key mismatch
        return f"weights do not fit the run's model ({str(exc).splitlines()[0][:120]})"
    return None


def newest_complete_checkpoint(folder: str | os.PathLike, cfg: Mapping[str, Any],
                               names: tuple[str, ...] = ("last.ckpt", "best.ckpt")
                               ) -> tuple[Path | None, int | None, list[str]]:
    """The checkpoint to resume from: ``(path, epoch, skipped)``.

    ``path`` is the usable checkpoint with the highest (epoch, step), or None when
    none is usable; ``skipped`` holds one ``"<file>: <why>"`` line per unusable one.
    """
    best: tuple[tuple[int, int], Path] | None = None
    skipped = []
    for name in names:
        p = Path(folder) / name
        if not p.is_file():
            continue
        key, problem = _resume_candidate(p, cfg)
        if problem is not None:
            skipped.append(f"{p}: {problem}")
        elif best is None or key > best[0]:
            best = (key, p)
    return (None, None, skipped) if best is None else (best[1], best[0][0], skipped)


# ----------------------------------------------------------------------------- matching a run
def compatibility_problem(meta: Any, cfg: Mapping[str, Any],
                          sections: tuple[str, ...] = ("preprocessing", "model")) -> str | None:
    """Why a checkpoint's medseg metadata does not belong to a run of ``cfg`` (None: it does).

    Compares the dataset and preprocessing (window, size, channels), the model
    settings (and, if asked, the regularizer) — what decides how inputs are read and
    what the weights mean.
    """
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        return "not a medseg checkpoint (missing or unknown 'medseg' metadata)"
    want = medseg_metadata(cfg)
    for section in sections:
        have = meta.get(section)
        if not isinstance(have, dict):
            return f"checkpoint metadata has no '{section}'"
        for key in sorted(set(want[section]) | set(have)):
            if have.get(key) != want[section].get(key):
                label = "dataset" if key == "dataset" else f"{section}.{key}"
                return (f"checkpoint {label} is {have.get(key)!r}, the run's is "
                        f"{want[section].get(key)!r}")
    return None


def _run_model_checkpoint_class():
    from pytorch_lightning.callbacks import ModelCheckpoint

    class RunModelCheckpoint(ModelCheckpoint):
        """Lightning's ``ModelCheckpoint`` that keeps its best score across the run folder's move.

        A run trains in its staging folder ``.<run>.new`` and is renamed to ``<run>`` when
        complete, so a ``--resume`` finds ``dirpath`` changed. Lightning then drops
        ``best_model_score``, and the first resumed epoch would replace ``best.ckpt`` however
        bad it is. Here a state saved in another run's ``checkpoints/`` folder is re-rooted in
        this one (paths by file name) and restored in full.
        """

        def load_state_dict(self, state_dict: dict[str, Any]) -> None:
            saved = state_dict.get("dirpath")
            if saved and self.dirpath and saved != self.dirpath and Path(saved).name == Path(self.dirpath).name:
                state_dict = _rerooted(state_dict, Path(self.dirpath))
            super().load_state_dict(state_dict)

    return RunModelCheckpoint


def _rerooted(state: dict[str, Any], folder: Path) -> dict[str, Any]:
    def moved(p: Any) -> Any:
        return str(folder / Path(p).name) if isinstance(p, str) and p else p

    out = {**state, "dirpath": str(folder)}
    for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
        if key in out:
            out[key] = moved(out[key])
    if isinstance(out.get("best_k_models"), dict):
        out["best_k_models"] = {moved(k): v for k, v in out["best_k_models"].items()}
    return out


def run_model_checkpoint(**kwargs: Any):
    """A :class:`RunModelCheckpoint` (``ModelCheckpoint`` whose best score survives the run's move)."""
    return _run_model_checkpoint_class()(**kwargs)
