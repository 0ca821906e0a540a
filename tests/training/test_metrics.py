"""Per-case and pooled DICE/IoU against hand computations (medseg.training.metrics)."""

import math

import pytest
import torch

from medseg.training.metrics import SegmentationScores


def masks(shape, fg):
    m = torch.zeros(shape, dtype=torch.uint8)
    for idx in fg:
        m[idx] = 1
    return m


def test_single_case_matches_hand_computation():
    # 3D case: prediction 4 voxels, label 6 voxels, overlap 4 → DICE 8/10, IoU 4/6
    pred = torch.zeros(2, 4, 4, dtype=torch.uint8)
    label = torch.zeros_like(pred)
    pred[0, :2, :2] = 1
    label[0, :2, :3] = 1
    s = SegmentationScores().update("c", pred, label)
    assert s.dice == pytest.approx(0.8, abs=1e-6)
    assert s.iou == pytest.approx(4 / 6, abs=1e-6)
    assert (s.pred_voxels, s.label_voxels, s.intersection) == (4, 6, 4)


def test_slices_are_pooled_per_case_not_averaged_per_slice():
    # slice 0 perfect (4/4), slice 1 missed entirely (0/12): the 3D DICE is 2·4/(4+16)
    pred = torch.zeros(2, 4, 4, dtype=torch.uint8)
    label = torch.zeros_like(pred)
    pred[0, :2, :2] = 1
    label[0, :2, :2] = 1
    label[1, :3, :4] = 1
    s = SegmentationScores().update("c", pred, label)
    assert s.dice == pytest.approx(8 / 20, abs=1e-6)   # per-slice mean would be 0.5
    assert s.iou == pytest.approx(4 / 16, abs=1e-6)


def test_empty_cases_follow_the_configured_convention():
    empty = torch.zeros(3, 3, dtype=torch.uint8)
    one = empty.clone()
    one[1, 1] = 1
    s = SegmentationScores(empty_score=1.0)
    assert s.update("both_empty", empty, empty).dice == 1.0
    assert s.update("false_positive", one, empty).dice == 0.0
    assert s.update("false_negative", empty, one).iou == 0.0
    left_out = SegmentationScores(empty_score=None)
    assert math.isnan(left_out.update("both_empty", empty, empty).dice)
    left_out.update("hit", one, one)
    summary = left_out.summary()
    assert summary["n_cases"] == 2 and summary["n_scored"] == 1
    assert summary["dice_mean"] == pytest.approx(1.0)


def test_summary_mean_std_and_pooled_scores():
    s = SegmentationScores()
    a = torch.zeros(10, dtype=torch.uint8)
    b = a.clone()
    a[:2] = 1
    b[:4] = 1                      # case 1: inter 2, |X| 2, |Y| 4 → DICE 4/6, IoU 2/4
    s.update("1", a, b)
    c = torch.zeros(10, dtype=torch.uint8)
    c[:6] = 1                      # case 2: inter 6, |X| 6, |Y| 6 → 1, 1
    s.update("2", c, c)
    out = s.summary()
    dices = [4 / 6, 1.0]
    mean = sum(dices) / 2
    std = math.sqrt(sum((d - mean) ** 2 for d in dices) / 1)  # ddof=1
    assert out["dice_mean"] == pytest.approx(mean, abs=1e-6)
    assert out["dice_std"] == pytest.approx(std, abs=1e-6)
    assert out["iou_mean"] == pytest.approx((0.5 + 1) / 2, abs=1e-6)
    # pooled: inter 8, |X| 8, |Y| 10 → DICE 16/18, IoU 8/10
    assert out["pooled_dice"] == pytest.approx(16 / 18)
    assert out["pooled_iou"] == pytest.approx(8 / 10)


def test_agrees_with_monai_on_random_masks():
    from monai.metrics import compute_dice, compute_iou

    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        p = (torch.rand(4, 16, 16, generator=g) > 0.6).to(torch.uint8)
        y = (torch.rand(4, 16, 16, generator=g) > 0.7).to(torch.uint8)
        s = SegmentationScores().score("r", p, y)
        ref_d = compute_dice(p[None, None].float(), y[None, None].float(), include_background=True)
        ref_i = compute_iou(p[None, None].float(), y[None, None].float(), include_background=True)
        assert s.dice == pytest.approx(float(ref_d), abs=1e-6)
        assert s.iou == pytest.approx(float(ref_i), abs=1e-6)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in shape"):
        SegmentationScores().score("x", torch.zeros(2, 2), torch.zeros(3, 3))
