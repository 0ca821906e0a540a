"""Several labels: each label scored as its own binary mask, the headline is their mean."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medseg.training.metrics import SegmentationScores

LABELS = [("liver", 1), ("kidney", 2), ("tumour", 3)]


def _maps():
    label = torch.zeros(4, 10, 10, dtype=torch.uint8)
    pred = torch.zeros_like(label)
    label[:, 0:4, 0:4] = 1          # liver 64 voxels
    pred[:, 0:4, 0:2] = 1           # predicted half of it: DICE 2·32/(32+64) = 2/3
    label[1, 6:8, 6:8] = 2          # kidney 4 voxels, predicted exactly
    pred[1, 6:8, 6:8] = 2
    # tumour: absent from label and prediction → empty_score
    return pred, label


def test_each_label_is_scored_alone_and_the_headline_is_the_mean():
    pred, label = _maps()
    s = SegmentationScores(1.0, labels=LABELS)
    row = s.update("c", pred, label, (2.0, 1.0, 1.0))
    assert row.per_label["liver"]["dice"] == pytest.approx(2 / 3)
    assert row.per_label["liver"]["iou"] == pytest.approx(0.5)
    assert row.per_label["kidney"]["dice"] == 1.0 and row.per_label["kidney"]["hd95"] == 0.0
    assert row.per_label["tumour"]["dice"] == 1.0 and row.per_label["tumour"]["hd95"] == 0.0
    assert row.dice == pytest.approx((2 / 3 + 1 + 1) / 3)
    assert row.label_voxels == 64 + 4 and row.pred_voxels == 32 + 4 and row.intersection == 36
    # the liver as a binary problem gives the same numbers as the binary scorer
    alone = SegmentationScores(1.0).score("c", (pred == 1).to(torch.uint8), (label == 1).to(torch.uint8),
                                          (2.0, 1.0, 1.0))
    assert (alone.dice, alone.iou, alone.hd95, alone.nsd) == tuple(
        row.per_label["liver"][m] for m in ("dice", "iou", "hd95", "nsd"))


def test_a_label_left_out_by_a_convention_does_not_count_in_the_mean():
    pred, label = _maps()
    row = SegmentationScores(None, labels=LABELS).score("c", pred, label, boundary=False)
    assert math.isnan(row.per_label["tumour"]["dice"])
    assert row.dice == pytest.approx((2 / 3 + 1) / 2)


def test_summary_and_row_per_label():
    pred, label = _maps()
    s = SegmentationScores(1.0, labels=LABELS)
    s.update("a", pred, label, boundary=False)
    s.update("b", label, label, boundary=False)
    summary = s.summary()
    assert summary["labels"]["liver"]["dice_mean"] == pytest.approx((2 / 3 + 1) / 2)
    assert summary["labels"]["liver"]["pooled_dice"] == pytest.approx(2 * (32 + 64) / (96 + 128))
    assert summary["dice_mean"] == pytest.approx(np.mean([(2 / 3 + 2) / 3, 1.0]))
    row = s.rows[0].as_row()
    assert list(row)[:8] == ["case_id", "dice", "iou", "pred_voxels", "label_voxels", "intersection",
                             "hd95", "nsd"]
    assert row["dice_liver"] == pytest.approx(2 / 3) and "nsd_tumour" in row


def test_binary_rows_and_summary_have_no_label_parts():
    pred, label = _maps()
    s = SegmentationScores(1.0)
    s.update("a", pred, label, boundary=False)
    assert "labels" not in s.summary() and s.rows[0].per_label == {}
    assert list(s.rows[0].as_row()) == ["case_id", "dice", "iou", "pred_voxels", "label_voxels",
                                        "intersection", "hd95", "nsd"]
    # binary: any non-zero value is foreground, as before
    assert s.rows[0].label_voxels == 68
