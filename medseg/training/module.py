"""The LightningModule: one network, its loss, Adam, and per-case evaluation.

Training sees 2D slices; validation and test see whole cases (all slices of a
CT scan, or one frame), predicted in chunks, resampled to the case's native grid
and scored there (:mod:`medseg.training.metrics`). ``val_dice`` (mean per-case
DICE on the validation split) drives the best checkpoint; validation computes
DICE/IoU only, the test adds the boundary metrics (HD95, NSD) with the case's spacing.

Under DDP every rank scores its share of the cases; the per-case rows are
gathered to every rank and de-duplicated by case id (the distributed sampler
pads by repeating cases), so each case counts exactly once.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

import pytorch_lightning as pl
import torch

from ..data.preprocess import predict_slices
from ..models import build as build_model
from ..data.nnunet import describe_dataset
from .checkpoint import in_channels, medseg_metadata, out_channels, _model_options
from .losses import build_loss, supervised_loss
from .metrics import CaseScore, SegmentationScores, distance_unit


def poly_factor(total_steps: int, exponent: float):
    """The poly schedule's factor at optimizer step ``step``: (1 − step/total)^exponent.

    ``lr = lr0 · poly_factor(total, e)(step)`` (nnU-Net: e = 0.9), applied per step,
    so the last of ``total`` steps trains at lr0·(1/total)^e and the rate reaches 0
    only after the schedule ends.
    """
    def factor(step: int) -> float:
        return max(0.0, 1.0 - step / total_steps) ** exponent

    return factor


class SegmentationModule(pl.LightningModule):
    """U-Net family + regularizer, trained with the protocol's loss and Adam."""

    def __init__(self, cfg: Mapping[str, Any]):
        super().__init__()
        self.cfg = cfg
        m = cfg["model"]
        self.model = build_model(
            m["name"], in_channels(cfg), out_channels(cfg), base_channels=m["base_channels"], depth=m["depth"],
            norm=m["norm"], regularizer=cfg["regularizer"], **_model_options(m),
        )
        if m["foreground_prior"] is not None:
            self.model.init_foreground_prior(m["foreground_prior"])
        t = cfg["train"]
        self.loss = build_loss(t["loss"], cfg["data"]["dataset"], dice_batch=t["dice_batch"],
                               dice_include_background=t["dice_include_background"])
        #: the foreground labels the metrics score one by one (several labels only)
        self.labels = describe_dataset(cfg["data"]).foreground
        self._metadata: dict[str, Any] | None = None
        self._rows: list[CaseScore] = []
        #: per-case rows of the last test run (filled on every rank after gathering)
        self.test_rows: list[CaseScore] = []
        self.test_summary: dict[str, Any] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    # ------------------------------------------------------------------ train
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        out = self.model(batch["image"])
        loss = supervised_loss(self.loss, out, batch["label"])
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True,
                 batch_size=batch["image"].shape[0])
        return loss

    def configure_optimizers(self):
        t = self.cfg["train"]
        optimizer = torch.optim.Adam(self.parameters(), lr=t["lr"], betas=tuple(t["betas"]),
                                     eps=t["eps"], weight_decay=t["weight_decay"])
        if t["lr_schedule"] == "constant":
            return optimizer
        total = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, poly_factor(total, t["poly_exponent"]))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ------------------------------------------------------------------ eval
    def _score_case(self, batch: dict[str, Any], boundary: bool) -> None:
        """Predict one case and score it on its native grid; ``boundary``: also HD95/NSD
        (test only: model selection needs DICE alone, and the surface distances of a
        full-size scan cost many times its DICE)."""
        label = batch["native_label"]
        pred = predict_slices(self.model, batch["image"], label.shape[-2:],
                              self.cfg["eval"]["batch_size"])
        scorer = SegmentationScores.from_config(self.cfg["eval"], self.labels)
        self._rows.append(scorer.score(batch["case_id"], pred, label.cpu(), batch.get("spacing"),
                                       boundary=boundary))

    def _gathered_scores(self) -> SegmentationScores:
        rows = self._rows
        self._rows = []
        if self.trainer is not None and self.trainer.world_size > 1 and torch.distributed.is_initialized():
            parts: list[list[CaseScore]] = [None] * self.trainer.world_size  # type: ignore[list-item]
            torch.distributed.all_gather_object(parts, rows)
            rows = [r for part in parts for r in part]
        unique: dict[str, CaseScore] = {}
        for r in rows:
            unique.setdefault(r.case_id, r)
        scores = SegmentationScores.from_config(self.cfg["eval"], self.labels)
        scores.extend(sorted(unique.values(), key=lambda r: r.case_id))
        return scores

    def on_validation_epoch_start(self) -> None:
        self._rows = []

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._score_case(batch, boundary=False)

    def on_validation_epoch_end(self) -> None:
        s = self._gathered_scores().summary()
        dice = s["dice_mean"] if s["n_scored"] else 0.0
        self.log("val_dice", float(dice), prog_bar=True, sync_dist=False, rank_zero_only=False)
        self.log("val_iou", float(s["iou_mean"] if s["n_scored"] else 0.0), sync_dist=False)

    def on_test_epoch_start(self) -> None:
        self._rows = []

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._score_case(batch, boundary=True)

    def on_test_epoch_end(self) -> None:
        scores = self._gathered_scores()
        self.test_rows = scores.rows
        self.test_summary = {**scores.summary(),
                             "distance_unit": distance_unit(self.cfg["data"]["dataset"])}
        self.log("test_dice", float(self.test_summary["dice_mean"]))
        self.log("test_iou", float(self.test_summary["iou_mean"]))
        self.log("test_hd95", float(self.test_summary["hd95_mean"]))
        self.log("test_nsd", float(self.test_summary["nsd_mean"]))

    # ------------------------------------------------------------------ checkpoint
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # built once per module: it reads dataset.json and the plan, and the run's config is fixed
        if self._metadata is None:
            self._metadata = medseg_metadata(self.cfg)
        checkpoint["medseg"] = copy.deepcopy(self._metadata)
