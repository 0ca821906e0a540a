"""Tiny untrained checkpoints for the predict tests: built in milliseconds, nothing trained.

A freshly initialised network (base 4, depth 3, 32×32 slices) saved the way
Lightning saves a medseg run, through :func:`medseg.bench.predict.make_checkpoint`.
Its weights are random, so its masks are arbitrary but deterministic. A fresh
network's output is nearly constant, so the 1×1 head is rescaled once on a
synthetic scan (logit difference centred, spread ~3): about half the voxels
come out foreground and the probabilities spread over (0, 1).
"""

from __future__ import annotations

from pathlib import Path

import pytest

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "cpu"
TINY = ["data.size=[32,32]", "model.base_channels=4", "model.depth=3", "eval.batch_size=8"]


def make_tiny_checkpoint(path: Path, dataset: str = "pancreas", *overrides: str,
                         root: Path | None = None, cache_dir: Path | None = None) -> Path:
    """``dataset`` pancreas, bagls or nnunet (``root``: the nnU-Net raw dataset folder;
    ``cache_dir``: where its fingerprint and plan go, default next to ``path``)."""
    from medseg.bench.predict import make_checkpoint
    from medseg.config import load_config

    base = CONFIGS / ("bagls_unet.yaml" if dataset == "bagls" else "pancreas_unet.yaml")
    extra = [f"data.root={path.parent}"]
    if dataset == "nnunet":
        extra = ["data.dataset=nnunet", f"data.root={root}",
                 f"data.cache_dir={cache_dir or path.parent / 'cache'}"]
    cfg = load_config(base, [*extra, *TINY, *overrides])
    path.parent.mkdir(parents=True, exist_ok=True)
    make_checkpoint(cfg, path)
    return _spread_head(path, cfg)


def _spread_head(path: Path, cfg: dict) -> Path:
    import torch

    from medseg.training.checkpoint import build_model_from_checkpoint, in_channels

    model, _ = build_model_from_checkpoint(path)
    g = torch.Generator().manual_seed(0)
    channels = in_channels(cfg)
    x = torch.rand(4, channels, *cfg["data"]["size"], generator=g)
    x = torch.nn.functional.avg_pool2d(x, 5, 1, 2)  # smooth: image-like structure
    with torch.no_grad():
        logits = model(x)
    if logits.shape[1] > 2:
        return _spread_classes(path, logits)
    diff = logits[:, 1] - logits[:, 0]
    scale = 3.0 / float(diff.std().clamp_min(1e-12))
    ckpt = torch.load(path, weights_only=True)
    sd = ckpt["state_dict"]
    w, b = sd["model.head.weight"], sd["model.head.bias"]
    centre = float(diff.mean()) * scale
    sd["model.head.weight"] = w * scale
    sd["model.head.bias"] = b * scale + torch.tensor([centre / 2, -centre / 2], dtype=b.dtype)
    torch.save(ckpt, path)
    return path


def _spread_classes(path: Path, logits) -> Path:
    """Several classes: every class's logit centred and spread (~3), so the arg-max visits
    every class and the probabilities spread over (0, 1)."""
    import torch

    scale = 3.0 / logits.std(dim=(0, 2, 3)).clamp_min(1e-12)
    centre = logits.mean(dim=(0, 2, 3)) * scale
    ckpt = torch.load(path, weights_only=True)
    sd = ckpt["state_dict"]
    w, b = sd["model.head.weight"], sd["model.head.bias"]
    sd["model.head.weight"] = w * scale.view(-1, *([1] * (w.dim() - 1))).to(w.dtype)
    sd["model.head.bias"] = (b * scale - centre).to(b.dtype)
    torch.save(ckpt, path)
    return path


@pytest.fixture(scope="session")
def make_ckpt():
    """:func:`make_tiny_checkpoint` for tests that build their own (a fixture: importing
    ``conftest`` from a test module resolves to another folder's in a full run)."""
    return make_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_ckpts(tmp_path_factory) -> dict[str, Path]:
    """Named tiny checkpoints: CT ones with seeds 0–2, a dropout one, a heuristic one, a BAGLS one."""
    d = tmp_path_factory.mktemp("tiny_ckpts")
    return {
        "ct0": make_tiny_checkpoint(d / "ct0.ckpt", "pancreas", "seed=0"),
        "ct1": make_tiny_checkpoint(d / "ct1.ckpt", "pancreas", "seed=1"),
        "ct2": make_tiny_checkpoint(d / "ct2.ckpt", "pancreas", "seed=2"),
        "ct48": make_tiny_checkpoint(d / "ct48.ckpt", "pancreas", "data.size=[48,48]"),
        "dropout": make_tiny_checkpoint(d / "dropout.ckpt", "pancreas", "regularizer.name=dropout",
                                        "regularizer.p=0.5"),
        "heuristic": make_tiny_checkpoint(d / "heuristic.ckpt", "pancreas",
                                          "regularizer.name=heuristic"),
        "bagls": make_tiny_checkpoint(d / "bagls.ckpt", "bagls"),
        "mirror_xy": make_tiny_checkpoint(d / "mirror_xy.ckpt", "pancreas", "data.mirror_axes=[x,y]"),
        "no_mirror": make_tiny_checkpoint(d / "no_mirror.ckpt", "pancreas", "data.mirror_axes=[]"),
    }


@pytest.fixture(scope="session")
def ct_series(pancreas_root) -> Path:
    """The folder of one synthetic DICOM series (64×64×12)."""
    patient = sorted((pancreas_root / "Pancreas-CT").iterdir())[0]
    (folder,) = {p.parent for p in patient.rglob("*.dcm")}
    return folder
