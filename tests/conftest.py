"""Shared fixtures: tiny synthetic datasets and a tiny trained run, made once per session.

Everything is CPU-sized (64×64 slices, base-4 networks, one epoch) so the whole
suite stays within minutes on 2 cores.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


# ----------------------------------------------------------------------------- the quick loop
# ``pytest -m "not slow"`` is the quick loop: a test that trains (here or through a fixture it
# uses) must be marked ``@pytest.mark.slow``. Enforced: outside a slow test, Trainer.fit raises.
_current_test_is_slow = [True]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    _current_test_is_slow[0] = item.get_closest_marker("slow") is not None
    yield


def pytest_configure(config):
    import pytorch_lightning as pl

    fit = pl.Trainer.fit

    def guarded_fit(self, *args, **kwargs):
        if not _current_test_is_slow[0]:
            raise RuntimeError("this test trains a model: mark it @pytest.mark.slow")
        return fit(self, *args, **kwargs)

    pl.Trainer.fit = guarded_fit


PANCREAS_OVERRIDES = [
    "data.size=[64,64]", "data.num_cases=5", "data.split=[2,1,2]",
    "model.base_channels=4", "model.depth=3", "train.epochs=1", "train.batch_size=8",
    "train.progress_bar=false", "train.num_threads=2", "eval.batch_size=16",
]
BAGLS_OVERRIDES = [
    "data.size=[64,32]", "data.train_frames=24", "data.val_frames=6", "data.test_frames=8",
    "model.base_channels=4", "model.depth=3", "train.epochs=1", "train.batch_size=8",
    "train.progress_bar=false", "train.num_threads=2", "eval.batch_size=16",
]


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("synthetic")


@pytest.fixture(scope="session")
def pancreas_root(synth_root) -> Path:
    """A tiny Pancreas-CT set in the TCIA layout: 5 scans of 64×64×12."""
    from medseg.data import synth_pancreas

    return Path(synth_pancreas(synth_root / "pancreas", layout="tcia", cases=5, size=64,
                               slices=12, seed=0))


@pytest.fixture(scope="session")
def bagls_root(synth_root) -> Path:
    """A tiny BAGLS set: 40 training and 8 test frames."""
    from medseg.data import synth_bagls

    return Path(synth_bagls(synth_root / "bagls", frames=40, test_frames=8, seed=0))


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def tiny_config(dataset: str, root: Path, cache: Path, *extra: str) -> dict:
    from medseg.config import load_config

    base = Path(__file__).resolve().parents[1] / "configs" / "cpu"
    path = base / ("pancreas_unet.yaml" if dataset == "pancreas" else "bagls_unet.yaml")
    overrides = PANCREAS_OVERRIDES if dataset == "pancreas" else BAGLS_OVERRIDES
    return load_config(path, [f"data.root={root}", f"data.cache_dir={cache}", *overrides, *extra])


@pytest.fixture(scope="session")
def pancreas_cfg(pancreas_root, cache_dir) -> dict:
    return tiny_config("pancreas", pancreas_root, cache_dir)


@pytest.fixture(scope="session")
def bagls_cfg(bagls_root, cache_dir) -> dict:
    return tiny_config("bagls", bagls_root, cache_dir)


@pytest.fixture(scope="session")
def pancreas_run(pancreas_cfg, tmp_path_factory) -> Path:
    """A tiny trained Pancreas-CT U-Net run folder (1 epoch). Treat as read-only."""
    from medseg.training.run import train_run

    run_dir = tmp_path_factory.mktemp("runs") / "pancreas"
    train_run(pancreas_cfg, run_dir, progress=False)
    return run_dir


@pytest.fixture(scope="session")
def bagls_run(bagls_cfg, tmp_path_factory) -> Path:
    """A tiny trained BAGLS U-Net run folder (1 epoch). Treat as read-only."""
    from medseg.training.run import train_run

    run_dir = tmp_path_factory.mktemp("runs") / "bagls"
    train_run(bagls_cfg, run_dir, progress=False)
    return run_dir
