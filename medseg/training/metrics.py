"""DICE and IoU per case and pooled over a set, with a stated empty-case rule.

DICE = 2|X∩Y| / (|X|+|Y|), IoU = |X∩Y| / |X∪Y| (X prediction, Y ground truth),
computed per case by MONAI's :class:`~monai.metrics.DiceMetric` and
:class:`~monai.metrics.MeanIoU` on the binary foreground over the case's whole
native grid: a CT scan's stacked slices in 3D, a BAGLS frame in 2D.

Aggregation (ours, tested against hand computations):

* ``mean``/``std`` over cases (std with ddof=1; 0 for a single case);
* ``pooled`` (global) scores from the voxel counts summed over all cases;
* a case where prediction and label are both empty scores ``empty_score``
  (default 1.0); with ``empty_score=None`` such cases are left out of the mean
  (they still count, trivially, in the pooled score).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable

import torch
from monai.metrics import DiceMetric, MeanIoU


@dataclass
class CaseScore:
    case_id: str
    dice: float          # NaN when the case is left out (both empty, empty_score None)
    iou: float
    pred_voxels: int
    label_voxels: int
    intersection: int

    def as_row(self) -> dict:
        return asdict(self)


def _stats(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    t = torch.tensor(values, dtype=torch.float64)
    std = t.std(unbiased=True).item() if len(values) > 1 else 0.0
    return t.mean().item(), std


class SegmentationScores:
    """Accumulates per-case DICE/IoU and voxel counts; summarises them."""

    def __init__(self, empty_score: float | None = 1.0):
        self.empty_score = empty_score
        self._dice = DiceMetric(include_background=True, reduction="none", ignore_empty=False)
        self._iou = MeanIoU(include_background=True, reduction="none", ignore_empty=False)
        self.rows: list[CaseScore] = []

    def score(self, case_id: str, pred: torch.Tensor, label: torch.Tensor) -> CaseScore:
        """Score one case: ``pred`` and ``label`` are same-shape binary masks."""
        if pred.shape != label.shape:
            raise ValueError(f"case {case_id}: prediction {tuple(pred.shape)} and label "
                             f"{tuple(label.shape)} differ in shape")
        p = (pred > 0)
        y = (label > 0)
        n_p, n_y = int(p.sum()), int(y.sum())
        inter = int((p & y).sum())
        if n_p == 0 and n_y == 0:
            value = float("nan") if self.empty_score is None else float(self.empty_score)
            dice = iou = value
        else:
            yp = p[None, None].to(torch.float32)
            yy = y[None, None].to(torch.float32)
            dice = float(self._dice(y_pred=yp, y=yy).reshape(-1)[0])
            iou = float(self._iou(y_pred=yp, y=yy).reshape(-1)[0])
            self._dice.reset()
            self._iou.reset()
        return CaseScore(case_id, dice, iou, n_p, n_y, inter)

    def update(self, case_id: str, pred: torch.Tensor, label: torch.Tensor) -> CaseScore:
        row = self.score(case_id, pred, label)
        self.rows.append(row)
        return row

    def extend(self, rows: Iterable[CaseScore]) -> None:
        self.rows.extend(rows)

    def summary(self) -> dict:
        scored = [r for r in self.rows if not math.isnan(r.dice)]
        dice_mean, dice_std = _stats([r.dice for r in scored])
        iou_mean, iou_std = _stats([r.iou for r in scored])
        sp = sum(r.pred_voxels for r in self.rows)
        sy = sum(r.label_voxels for r in self.rows)
        si = sum(r.intersection for r in self.rows)
        if sp + sy == 0:
            pooled_dice = pooled_iou = float("nan") if self.empty_score is None else float(self.empty_score)
        else:
            pooled_dice = 2.0 * si / (sp + sy)
            pooled_iou = si / (sp + sy - si)
        return {
            "n_cases": len(self.rows),
            "n_scored": len(scored),
            "dice_mean": dice_mean, "dice_std": dice_std,
            "iou_mean": iou_mean, "iou_std": iou_std,
            "pooled_dice": pooled_dice, "pooled_iou": pooled_iou,
            "empty_score": self.empty_score,
            "aggregation": "per case (3D per CT scan on its native grid, 2D per frame); "
                           "mean and std (ddof=1) over cases; pooled = from voxel counts summed "
                           "over cases; both-empty cases score empty_score "
                           "(null: left out of the mean)",
        }
