"""Per-case and pooled DICE/IoU against hand computations (medseg.training.metrics)."""

import math
import statistics

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


# --------------------------------------------------------------------------- boundary metrics


def blob(shape, centre, radii):
    """A filled ellipsoid (voxel units) as a uint8 mask."""
    grids = torch.meshgrid(*[torch.arange(n, dtype=torch.float32) for n in shape], indexing="ij")
    r2 = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii))
    return (r2 <= 1.0).to(torch.uint8)


def monai_hd95_nsd(pred, label, spacing, tolerance=2.0):
    """MONAI's HD95 and its NSD by the reference definition (surface elements weighted by area)."""
    from monai.metrics import HausdorffDistanceMetric, SurfaceDiceMetric

    yp, yy = pred[None, None].float(), label[None, None].float()
    hd = HausdorffDistanceMetric(include_background=True, percentile=95, reduction="none")
    sd = SurfaceDiceMetric([tolerance], include_background=True, reduction="none", use_subvoxels=True)
    return float(hd(y_pred=yp, y=yy, spacing=list(spacing))), float(sd(y_pred=yp, y=yy, spacing=list(spacing)))


def test_hd95_and_nsd_equal_monai_on_an_anisotropic_grid():
    spacing = (3.0, 0.8, 0.5)  # (z, y, x) mm, the axis order of the masks
    label = blob((10, 24, 28), (4.5, 11, 13), (3, 7, 9))
    pred = blob((10, 24, 28), (5.2, 12, 11), (3.5, 6, 10))
    s = SegmentationScores(nsd_tolerance_mm=2.0).score("c", pred, label, spacing)
    hd, nsd = monai_hd95_nsd(pred, label, spacing)
    assert s.hd95 == pytest.approx(hd, abs=1e-5) and s.nsd == pytest.approx(nsd, abs=1e-6)
    assert 0 < s.nsd < 1 and s.hd95 > 0
    swapped = monai_hd95_nsd(pred, label, spacing[::-1])
    assert s.hd95 != pytest.approx(swapped[0], abs=1e-3)   # the spacing order matters here


def test_spacing_is_applied_in_the_axis_order_of_the_masks():
    # two one-voxel-thick plates one slice apart: every voxel is a boundary voxel (HD95) and its
    # nearest neighbour in the other plate is exactly one slice (the z spacing) away; for NSD
    # the plates share the face between the slices (half of each surface, distance 0) and their
    # other faces are one slice apart (tests/training/test_metrics_nsd.py derives the 1/2)
    label = torch.zeros(6, 8, 8, dtype=torch.uint8)
    pred = torch.zeros_like(label)
    label[2, 2:6, 2:6] = 1
    pred[3, 2:6, 2:6] = 1
    z_first = SegmentationScores(nsd_tolerance_mm=2.0).score("c", pred, label, (3.0, 1.0, 0.5))
    assert z_first.hd95 == pytest.approx(3.0, abs=1e-5) and z_first.nsd == pytest.approx(0.5, abs=1e-6)
    x_first = SegmentationScores(nsd_tolerance_mm=2.0).score("c", pred, label, (0.5, 1.0, 3.0))
    assert x_first.hd95 == pytest.approx(0.5, abs=1e-5) and x_first.nsd == pytest.approx(1.0, abs=1e-6)


def test_a_frame_is_scored_in_2d_in_pixels():
    label = torch.zeros(1, 16, 16, dtype=torch.uint8)
    label[0, 4:10, 4:10] = 1
    pred = torch.roll(label, 2, dims=2)
    s = SegmentationScores(nsd_tolerance_mm=1.0).score("f", pred, label, (1.0, 1.0))
    hd, nsd = monai_hd95_nsd(pred[0], label[0], (1.0, 1.0), tolerance=1.0)
    assert (s.hd95, s.nsd) == (pytest.approx(hd, abs=1e-6), pytest.approx(nsd, abs=1e-6))
    assert s.hd95 == pytest.approx(2.0)
    slab = monai_hd95_nsd(pred, label, (1.0, 1.0, 1.0), tolerance=1.0)
    assert slab[1] != pytest.approx(s.nsd, abs=1e-3)  # a one-slice 3D slab would differ (its faces are surface)
    with pytest.raises(ValueError, match="does not fit"):
        SegmentationScores().score("f", pred, label, (1.0,))


def test_empty_case_conventions_for_the_boundary_metrics():
    empty = torch.zeros(4, 10, 12, dtype=torch.uint8)
    one = empty.clone()
    one[1:3, 4:6, 4:6] = 1
    spacing = (2.5, 0.8, 0.7)
    diagonal = math.sqrt((4 * 2.5) ** 2 + (10 * 0.8) ** 2 + (12 * 0.7) ** 2)
    # MONAI itself gives NaN here: the convention is ours, and stated
    assert math.isnan(monai_hd95_nsd(empty, one, spacing)[0]) and math.isnan(monai_hd95_nsd(empty, empty, spacing)[1])
    s = SegmentationScores()
    both = s.score("both", empty, empty, spacing)
    assert (both.hd95, both.nsd) == (0.0, 1.0)
    for pred, label in ((empty, one), (one, empty)):
        missed = s.score("one", pred, label, spacing)
        assert missed.hd95 == pytest.approx(diagonal) and missed.nsd == 0.0
    fixed = SegmentationScores(missing_hd95=100.0).score("one", empty, one, spacing)
    assert fixed.hd95 == 100.0
    left_out = SegmentationScores(empty_score=None, empty_hd95=None, missing_hd95=None)
    assert all(math.isnan(v) for v in (left_out.score("b", empty, empty, spacing).hd95,
                                         left_out.score("b", empty, empty, spacing).nsd,
                                         left_out.score("o", empty, one, spacing).hd95))
    assert left_out.score("o", empty, one, spacing).nsd == 0.0
    assert math.isnan(s.score("v", one, one, spacing, boundary=False).hd95)  # validation: not computed


def test_summary_has_mean_std_median_of_every_metric():
    s = SegmentationScores(empty_hd95=None)
    label = torch.zeros(4, 12, 12, dtype=torch.uint8)
    label[1:3, 3:8, 3:8] = 1
    for shift in (0, 1, 3):
        s.update(f"c{shift}", torch.roll(label, shift, dims=2), label, (2.0, 1.0, 1.0))
    s.update("empty", torch.zeros_like(label), torch.zeros_like(label), (2.0, 1.0, 1.0))  # HD95 left out
    out = s.summary()
    hd = [r.hd95 for r in s.rows[:3]]
    assert out["n_scored_hd95"] == 3 and out["n_scored_nsd"] == 4 and out["n_scored"] == 4
    assert out["hd95_mean"] == pytest.approx(sum(hd) / 3)
    assert out["hd95_median"] == pytest.approx(sorted(hd)[1])
    assert out["hd95_std"] == pytest.approx(torch.tensor(hd, dtype=torch.float64).std().item())
    assert out["nsd_median"] == pytest.approx(statistics.median(r.nsd for r in s.rows))
    assert out["missing_hd95"] == "diagonal" and out["nsd_tolerance_mm"] == 2.0


def test_boundary_conventions_come_from_the_eval_config():
    from medseg.config import validate
    from medseg.errors import ConfigError

    raw = {"data": {"dataset": "pancreas", "root": "x"},
           "eval": {"nsd_tolerance_mm": 1.5, "empty_hd95": None, "missing_hd95": 80}}
    cfg = validate(raw)
    s = SegmentationScores.from_config(cfg["eval"])
    assert (s.nsd_tolerance_mm, s.empty_hd95, s.missing_hd95) == (1.5, None, 80.0)
    assert validate({"data": raw["data"]})["eval"]["missing_hd95"] == "diagonal"
    with pytest.raises(ConfigError, match="eval.missing_hd95"):
        validate({**raw, "eval": {"missing_hd95": "worst"}})


def test_hd95_is_labelled_in_mm_for_ct_and_in_pixels_for_frames():
    from medseg.experiments.report.tables import metric_name
    from medseg.training.metrics import distance_unit, summary_line

    assert distance_unit("pancreas") == "mm" and distance_unit("bagls") == "px"
    s = {"dice_mean": 0.5, "dice_std": 0.1, "hd95_mean": 3.0, "hd95_std": 1.0, "pooled_dice": 0.5,
         "n_cases": 2}
    assert "HD95 3.0000 ± 1.0000 px" in summary_line({**s, "distance_unit": distance_unit("bagls")})
    assert "HD95 3.0000 ± 1.0000 mm" in summary_line(s)
    assert metric_name("hd95", "bagls") == "HD95 (px)" and metric_name("hd95", "pancreas") == "HD95 (mm)"
    assert metric_name("dice", "bagls") == "DICE"
