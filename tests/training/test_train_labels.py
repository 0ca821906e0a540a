"""Training on datasets with several labels (and one): nnU-Net raw folders (3D NIfTI, 2D PNG) and
Pancreas-CT in the Decathlon layout with pancreas and tumour as two classes."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
import torch

from medseg.config import load_config
from medseg.training.checkpoint import load_checkpoint
from medseg.training.run import train_run

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from nnunet_helpers import write_nnunet, write_nnunet_png  # noqa: E402

TINY = ["model.base_channels=4", "model.depth=2", "train.epochs=1", "train.batch_size=8",
        "train.progress_bar=false", "data.size=[24,24]", "eval.batch_size=16"]


def _train(tmp_path, dataset: str, root: Path, *extra: str) -> Path:
    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "cpu" / "pancreas_unet.yaml",
                      [f"data.dataset={dataset}", f"data.root={root}", f"data.cache_dir={tmp_path / 'cache'}",
                       *TINY, *extra])
    run = tmp_path / "run"
    train_run(cfg, run, progress=False)
    return run


def _columns(run: Path) -> list[str]:
    with open(run / "cases.csv", newline="") as fh:
        return next(csv.reader(fh))


@pytest.mark.slow
@pytest.mark.parametrize("labels", [1, 3])
def test_nnunet_dataset_heads_metrics_and_plan(tmp_path, labels):
    root = write_nnunet(tmp_path / "Dataset001_Tiny", cases=4, labels=labels, ras_every=2)
    run = _train(tmp_path, "nnunet", root, "data.num_cases=4", "data.split=[2,1,1]")
    meta = load_checkpoint(run / "checkpoints" / "best.ckpt")["medseg"]
    assert meta["out_channels"] == labels + 1 and meta["preprocessing"]["channels"] == 2
    assert meta["preprocessing"]["labels"] == {"background": 0, **{f"organ{v}": v for v in range(1, labels + 1)}}
    plan = json.loads((run / "plan.json").read_text())
    assert plan == meta["preprocessing"]["plan"] and plan["slice_axis"] == "z"
    metrics = json.loads((run / "metrics.json").read_text())
    per_label = [f"{m}_organ{v}" for v in range(1, labels + 1) for m in ("dice", "iou", "hd95", "nsd")]
    if labels == 1:
        assert "labels" not in metrics and len(_columns(run)) == 8
    else:
        assert sorted(metrics["labels"]) == ["organ1", "organ2", "organ3"]
        assert _columns(run)[8:] == per_label
        with open(run / "cases.csv", newline="") as fh:
            (row,) = list(csv.DictReader(fh))
        mean = sum(float(row[f"dice_organ{v}"]) for v in (1, 2, 3)) / 3
        assert float(row["dice"]) == pytest.approx(mean)


@pytest.mark.slow
def test_nnunet_png_dataset_trains_on_rgb_frames(tmp_path):
    root = write_nnunet_png(tmp_path / "Dataset002_Frames", cases=4)
    run = _train(tmp_path, "nnunet", root, "data.num_cases=4", "data.split=[2,1,1]")
    meta = load_checkpoint(run / "checkpoints" / "best.ckpt")["medseg"]
    assert meta["preprocessing"]["channels"] == 3 and meta["out_channels"] == 3
    assert meta["modality"] == "OT"


@pytest.mark.slow
def test_pancreas_msd_without_merging_trains_pancreas_and_tumour(tmp_path):
    from medseg.data import synth_pancreas

    root = synth_pancreas(tmp_path / "msd", layout="msd", cases=4, size=32, slices=8, seed=0)
    run = _train(tmp_path, "pancreas", root, "data.merge_tumour=false", "data.num_cases=4",
                 "data.split=[2,1,1]")
    ckpt = load_checkpoint(run / "checkpoints" / "best.ckpt")
    assert ckpt["medseg"]["out_channels"] == 3
    assert ckpt["medseg"]["preprocessing"]["labels"] == {"background": 0, "pancreas": 1, "tumour": 2}
    head = [v for k, v in ckpt["state_dict"].items() if k.endswith("weight") and v.ndim == 4][-1]
    assert head.shape[0] == 3
    assert _columns(run)[8:] == ["dice_pancreas", "iou_pancreas", "hd95_pancreas", "nsd_pancreas",
                                 "dice_tumour", "iou_tumour", "hd95_tumour", "nsd_tumour"]
