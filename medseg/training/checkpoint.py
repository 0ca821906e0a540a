"""Checkpoints that are safe to open and carry their own preprocessing.

A medseg checkpoint is a Lightning checkpoint with one extra entry, ``"medseg"``,
holding plain data only (str, int, float, bool, lists, dicts): the resolved run
config, the preprocessing (dataset, window, size, channels), and the model
settings. Checkpoints from elsewhere are untrusted: they are always opened with
``torch.load(..., weights_only=True)``, which refuses pickles that would run code.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path
from typing import Any, Mapping

import torch

from ..errors import CheckpointError

FORMAT = 1
#: DICOM Modality of each dataset's images, recorded in every checkpoint (``medseg predict``
#: refuses other modalities): CT for Pancreas-CT; ES (endoscopy, DICOM CID 29) for the
#: laryngeal high-speed videoendoscopy frames of BAGLS
MODALITY = {"pancreas": "CT", "bagls": "ES"}


def plain(obj: Any) -> Any:
    """A JSON round trip: guarantees the object is plain data (weights_only-loadable)."""
    return json.loads(json.dumps(obj))


def medseg_metadata(cfg: Mapping[str, Any]) -> dict[str, Any]:
    data = cfg["data"]
    pre = {"dataset": data["dataset"], "size": list(data["size"]), "channels": in_channels(cfg)}
    if data["dataset"] == "pancreas":
        pre["window"] = list(data["window"])
    return plain({
        "format": FORMAT,
        "preprocessing": pre,
        "modality": MODALITY[data["dataset"]],
        "model": dict(cfg["model"]),
        "regularizer": dict(cfg["regularizer"]),
        "out_channels": 2,
        "config": dict(cfg),
    })


def in_channels(cfg: Mapping[str, Any]) -> int:
    return 1 if cfg["data"]["dataset"] == "pancreas" else int(cfg["data"]["channels"])


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
    return {"medseg": meta, "state_dict": ckpt["state_dict"], "epoch": ckpt.get("epoch")}


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
