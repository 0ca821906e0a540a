"""Drop statistics (medseg.regularizers.diagnostics) on inputs whose answer is known."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from medseg.regularizers import HeuristicDropout
from medseg.regularizers.diagnostics import COLUMNS, DropRecorder, drop_statistics, selection_entropy
from medseg.regularizers.heuristic import channel_statistics


def known_input() -> torch.Tensor:
    """C = 10, rate 0.3 → 3 drops per sample. Sample 0: channels 1, 4, 7 all zero.
    Sample 1: channel 2 zero, channel 5 of variance ~1e-5 (low, but > eps)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 10, 6, 6, generator=g) + 0.5
    x[0, [1, 4, 7]] = 0.0
    x[1, 2] = 0.0
    x[1, 5] = 1.0 + 3e-3 * torch.randn(6, 6, generator=g)
    return x


def net(**params) -> nn.Module:
    return nn.Sequential(nn.BatchNorm2d(10), HeuristicDropout(rate=0.3, **params))


def test_dead_fraction_of_constructed_input_is_exact():
    model = net()
    (row,) = drop_statistics(model, known_input())
    assert list(row) == COLUMNS
    assert row["slot"] == "1" and row["channels"] == 10 and row["spatial"] == "6×6"
    assert row["dropped_per_sample"] == 3.0
    assert row["dead_fraction"] == 4 / 6            # 1, 4, 7 and 2
    assert row["low_variance_fraction"] == 5 / 6    # ... and channel 5


def test_skip_constant_spends_no_budget_on_constant_channels():
    (row,) = drop_statistics(net(skip_constant=True), known_input())
    assert row["dead_fraction"] == 0.0 and row["dropped_per_sample"] == 3.0
    assert row["low_variance_fraction"] == 1 / 6    # channel 5 still scores high


def test_means_are_those_of_the_dropped_and_kept_channels():
    x = known_input()
    (row,) = drop_statistics(net(), x)
    bn_x = x / math.sqrt(1 + 1e-5)  # BatchNorm in eval mode with fresh running stats
    entropy, variance = channel_statistics(bn_x)
    module = HeuristicDropout(rate=0.3)
    drop = module.dropped(entropy, variance)
    assert row["entropy_dropped"] == pytest.approx(float(entropy[drop].mean()), rel=1e-12)
    assert row["entropy_kept"] == pytest.approx(float(entropy[~drop].mean()), rel=1e-12)
    assert row["variance_dropped"] == pytest.approx(float(variance[drop].double().mean()), rel=1e-6)
    assert row["variance_kept"] == pytest.approx(float(variance[~drop].double().mean()), rel=1e-6)


def test_only_heuristic_slots_train_and_modes_and_weights_are_restored():
    model = net()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    drop_statistics(model, known_input())
    assert all(m.training for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN running stats untouched
    model.eval()
    drop_statistics(model, known_input())
    assert not any(m.training for m in model.modules())


def test_fused_slot_is_measured_after_its_relu():
    fused, plain = HeuristicDropout(rate=0.3), HeuristicDropout(rate=0.3)
    fused.fuse_relu()
    x = torch.randn(3, 10, 5, 5, generator=torch.Generator().manual_seed(1))
    (a,), (b,) = drop_statistics(nn.Sequential(fused), x.clone()), drop_statistics(
        nn.Sequential(nn.ReLU(), plain), x.clone())
    assert {k: v for k, v in a.items() if k != "slot"} == {k: v for k, v in b.items() if k != "slot"}


def test_accumulates_over_batches_and_3d_slots():
    model = nn.Sequential(HeuristicDropout(rate=0.25))
    g = torch.Generator().manual_seed(2)
    with DropRecorder(model) as rec:
        for _ in range(3):
            model(torch.rand(2, 8, 3, 4, 5, generator=g))
    (row,) = rec.rows()
    assert row["spatial"] == "3×4×5" and row["dropped_per_sample"] == 2.0
    freq, dead = rec.frequencies()["0"]
    assert freq.sum().item() == pytest.approx(2.0) and dead.sum().item() == 0.0


def test_selection_entropy_extremes():
    # the same 3 of 10 channels in every sample → 0; every channel equally often → 1
    assert selection_entropy(torch.tensor([4, 4, 4, 0, 0, 0, 0, 0, 0, 0]), 4) == 0.0
    assert selection_entropy(torch.tensor([1, 1, 1, 1]), 4) == pytest.approx(1.0)
    assert math.isnan(selection_entropy(torch.zeros(4, dtype=torch.long), 4))
    # identical samples in a network: always the same channels
    x = known_input()[:1].repeat(5, 1, 1, 1)
    (row,) = drop_statistics(net(), x)
    assert row["selection_entropy"] == 0.0


def test_a_network_without_heuristic_dropout_is_refused():
    with pytest.raises(ValueError, match="no Heuristic Dropout"):
        drop_statistics(nn.Sequential(nn.Conv2d(1, 2, 3)), torch.rand(1, 1, 5, 5))
