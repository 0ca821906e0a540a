"""A tiny finished experiment grid, made once per session (2 regularizers × 2 repeats × 1 epoch).

Runs on the session's tiny synthetic Pancreas-CT set (tests/conftest.py) with 64×64
slices and a base-4, depth-3 U-Net; one thread per run keeps it quick even on a busy
2-core machine. Tests that modify the folder work on a copy.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BASE = REPO / "configs" / "cpu" / "pancreas_unet.yaml"


def grid_overrides(root: Path, cache: Path) -> list[str]:
    return [f"data.root={root}", f"data.cache_dir={cache}", "data.size=[64,64]", "data.num_cases=5",
            "data.split=[2,1,2]", "model.base_channels=4", "model.depth=3", "train.epochs=1",
            "train.batch_size=8", "train.num_threads=1", "eval.batch_size=16",
            "grid.regularizers=[none,heuristic]", "grid.repeats=2"]


@pytest.fixture(scope="session")
def grid_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("exp_cfg") / "tiny_grid.yaml"
    path.write_text(yaml.safe_dump({"base": str(BASE), "grid": {"models": ["unet"],
                                                                "regularizers": ["none", "dropout"],
                                                                "repeats": 5}}))
    return path


@pytest.fixture(scope="session")
def tiny_grid(grid_file, pancreas_root, cache_dir, tmp_path_factory):
    """(experiment folder, resolved experiment, overrides) of a finished tiny grid. Read-only."""
    from medseg.experiments import read_experiment, run_experiment

    overrides = grid_overrides(pancreas_root, cache_dir)
    resolved = read_experiment(grid_file, overrides)
    out = tmp_path_factory.mktemp("exp") / "tiny"
    outcome = run_experiment(resolved, out, progress=False)
    assert len(outcome.ran) == outcome.total == 4
    return out, resolved, overrides


@pytest.fixture
def grid_copy(tiny_grid, tmp_path):
    """A writable copy of the finished tiny grid."""
    out, resolved, overrides = tiny_grid
    copy = tmp_path / "grid"
    shutil.copytree(out, copy)
    return copy, resolved, overrides


@pytest.fixture
def cv_overrides(pancreas_root, cache_dir) -> list[str]:
    """Overrides of a 5-fold cross-validation grid on the tiny set (one method, one repeat)."""
    return [*grid_overrides(pancreas_root, cache_dir), "grid.regularizers=[none]", "grid.repeats=1",
            "grid.folds=5"]


@pytest.fixture
def tiny_overrides(pancreas_root, cache_dir) -> list[str]:
    """The tiny grid's overrides (data, network, one epoch) for a grid of a test's own."""
    return grid_overrides(pancreas_root, cache_dir)
